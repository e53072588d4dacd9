// Benchmarks: format names, the JSONL loader, prompt builders, the checker dispatch. See include/kvlens/answers.h.
#include "kvlens/answers.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "kvlens/arith.h"
#include "kvlens/error.h"

namespace kvlens {

namespace {

using json = nlohmann::json;

struct FormatName {
    const char * name;
    BenchFormat format;
};
const FormatName kFormats[] = {
    {"gsm8k", BenchFormat::Gsm8k},         {"mgsm", BenchFormat::Mgsm},
    {"math", BenchFormat::Math},           {"math500", BenchFormat::Math},
    {"theoremqa", BenchFormat::TheoremQA}, {"csqa", BenchFormat::Csqa},
    {"commonsenseqa", BenchFormat::Csqa},  {"belebele", BenchFormat::Belebele},
    {"arith", BenchFormat::Arith},
};

// Reading one row: errors name the file, the line and the field.
struct RowReader {
    const std::string & path;
    int line;
    const json & obj;

    [[noreturn]] void fail(const std::string & what) const {
        throw Error(path + ":" + std::to_string(line) + ": " + what);
    }
    bool has(const char * field) const { return obj.contains(field) && !obj.at(field).is_null(); }
    // A string, or a number / bool / array written as JSON text.
    std::string text(const char * field) const {
        if (!has(field)) fail(std::string("missing field '") + field + "'");
        const json & v = obj.at(field);
        if (v.is_string()) return v.get<std::string>();
        if (v.is_number() || v.is_boolean() || v.is_array()) return v.dump();
        fail(std::string("field '") + field + "' is not text");
    }
    std::string text_or(const char * field, const std::string & fallback) const {
        return has(field) ? text(field) : fallback;
    }
};

void fill_row(BenchFormat format, const RowReader & r, const std::string & language, int index, BenchRow & row) {
    const std::string idx = std::to_string(index);
    switch (format) {
        case BenchFormat::Gsm8k:
            row.id = r.text_or("id", r.text_or("idx", idx));
            row.question = r.text("question");
            row.extra["solution"] = r.text("answer");
            if (row.extra["solution"].find("####") == std::string::npos) r.fail("field 'answer' has no '####' line");
            row.reference = gsm8k_reference(row.extra["solution"]);
            break;
        case BenchFormat::Mgsm:
            row.id = r.text_or("id", idx);
            row.question = r.text(language.c_str());
            row.reference = r.text("answer");
            break;
        case BenchFormat::Math:
            row.id = r.text_or("unique_id", r.text_or("id", idx));
            row.question = r.has("problem") ? r.text("problem") : r.has("en") ? r.text("en") : r.text("problem");
            if (r.has("solution")) row.extra["solution"] = r.text("solution");
            if (r.has("answer")) {
                row.reference = r.text("answer");
            } else {
                auto b = last_boxed(r.text("solution"));
                if (!b) r.fail("missing field 'answer' and no \\boxed{} in 'solution'");
                row.reference = *b;
            }
            for (const char * f : {"subject", "level", "type"})
                if (r.has(f)) row.extra[f] = r.text(f);
            break;
        case BenchFormat::TheoremQA:
            row.id = r.text_or("id", idx);
            row.question = r.text("en");
            row.reference = r.text("answer");
            row.extra["answer_type"] = r.text("answer_type");
            if (r.has("domain")) row.extra["domain"] = r.text("domain");
            break;
        case BenchFormat::Csqa:
        case BenchFormat::Belebele:
            row.id = r.text_or("id", idx);
            row.question = r.text("en");
            row.reference = r.text("answer");
            break;
        case BenchFormat::Arith:
            row.id = r.text_or("id", idx);
            row.question = r.text("question");
            row.reference = r.text("answer");
            if (r.has("level")) row.extra["level"] = r.text("level");  // as `kvlens arith` writes it
            break;
    }
}

}  // namespace

BenchFormat parse_bench_format(const std::string & name) {
    for (const auto & f : kFormats)
        if (name == f.name) return f.format;
    throw Error("unknown benchmark format '" + name +
                "' (expected gsm8k, mgsm, math, math500, theoremqa, csqa, commonsenseqa, belebele or arith)");
}

const char * to_string(BenchFormat f) {
    for (const auto & n : kFormats)
        if (n.format == f) return n.name;
    return "?";
}

std::optional<std::string> answer_region(const std::string & output) {
    const size_t close = output.rfind("</think>");
    if (close != std::string::npos) return output.substr(close + 8);
    if (output.find("<think>") != std::string::npos) return std::nullopt;
    return output;
}

std::vector<BenchRow> load_benchmark(const std::string & path, BenchFormat format, const std::string & language) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open benchmark file " + path);
    std::vector<BenchRow> rows;
    std::string line;
    for (int line_no = 1; std::getline(in, line); ++line_no) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        json obj;
        try {
            obj = json::parse(line);
        } catch (const json::exception & e) {
            throw Error(path + ":" + std::to_string(line_no) + ": malformed JSON (" + e.what() + ")");
        }
        if (!obj.is_object()) throw Error(path + ":" + std::to_string(line_no) + ": a row must be a JSON object");
        RowReader r{path, line_no, obj};
        BenchRow row;
        fill_row(format, r, language, (int) rows.size(), row);
        row.prompt = build_prompt(format, row.question, row.extra.count("answer_type") ? row.extra["answer_type"] : "");
        rows.push_back(std::move(row));
    }
    return rows;
}

std::vector<BenchRow> load_benchmark(const std::string & path, const std::string & format) {
    return load_benchmark(path, parse_bench_format(format));
}

std::string build_prompt(BenchFormat format, const std::string & q, const std::string & answer_type) {
    switch (format) {
        case BenchFormat::Gsm8k:
        case BenchFormat::Mgsm:
            return "Solve the following math problem. Show your reasoning step by step, then give the final answer "
                   "on the last line by itself, in the form \"Answer: <number>\", with nothing but the number after "
                   "\"Answer:\".\n\nQuestion:\n" + q + "\n";
        case BenchFormat::Math:
            return "Question: " + q + "\nPlease reason step by step, and put your final answer within \\boxed{}.\n";
        case BenchFormat::TheoremQA:
            return "Solve the following problem, thinking step by step. The answer type decides the form of the "
                   "answer: bool -> True or False; integer or float -> a number; list of integer or list of float "
                   "-> numbers in brackets, like [2, 3, 4]; option -> one of (a), (b), (c), (d). Finish with a "
                   "sentence of the form \"Therefore, the answer is ...\".\n\nQuestion:\n" + q +
                   "\n\nAnswer type: " + answer_type + "\n";
        case BenchFormat::Csqa:
            return "Answer the following multiple-choice common-sense question. Think step by step and explain "
                   "your reasoning, then end with a last line of the form \"Answer: X\", where X is one of A, B, C, "
                   "D, E.\n\n" + q + "\n";
        case BenchFormat::Belebele:
            return "Read the passage and answer the multiple-choice question about it. Explain your reasoning step "
                   "by step, then end with a last line of the form \"Answer: X\", where X is one of A, B, C, D.\n\n" +
                   q + "\n";
        case BenchFormat::Arith:
            return q;
    }
    return q;
}

AnswerCheck check_answer(BenchFormat format, const std::string & out, const BenchRow & row) {
    AnswerCheck c;
    switch (format) {
        case BenchFormat::Gsm8k:
        case BenchFormat::Mgsm:
            c.extracted = extract_gsm8k_answer(out);
            c.correct = gsm8k_check(out, row.reference);
            break;
        case BenchFormat::Math:
            if (auto region = answer_region(out)) c.extracted = last_boxed(*region);
            c.correct = math_check(out, row.reference);
            break;
        case BenchFormat::TheoremQA: {
            auto it = row.extra.find("answer_type");
            if (it == row.extra.end()) throw Error("TheoremQA row " + row.id + " has no answer_type");
            c.extracted = extract_theoremqa_answer(out, it->second);
            c.correct = theoremqa_check(out, row.reference, it->second);
            break;
        }
        case BenchFormat::Csqa:
        case BenchFormat::Belebele: {
            const bool bele = format == BenchFormat::Belebele;
            const std::string letters = bele ? "ABCD" : "ABCDE";
            if (auto ch = extract_choice(out, letters, bele)) c.extracted = std::string(1, *ch);
            c.correct = choice_check(out, row.reference, letters, bele);
            break;
        }
        case BenchFormat::Arith:
            c.extracted = arith_extract_answer(out);
            c.correct = arith_check(out, row.reference);
            break;
    }
    return c;
}

}  // namespace kvlens
