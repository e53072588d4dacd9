// CoE result records: JSONL writing and reading with line-numbered errors (kvlens/coe_run.h).
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kvlens/coe_run.h"
#include "kvlens/error.h"

namespace kvlens {

namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

ojson opt_num(const std::optional<double> & v) { return v ? ojson(*v) : ojson(nullptr); }

ojson scores_json(const std::optional<CoeScores> & s) {
    if (!s) return nullptr;
    return ojson{{"mag", s->mag}, {"ang", s->ang}, {"r", s->r}, {"c", s->c}};
}

struct LineReader {
    const std::string & path;
    int line;
    const json & obj;

    [[noreturn]] void fail(const std::string & what) const {
        throw Error(path + ":" + std::to_string(line) + ": " + what);
    }
    const json & need(const char * f) const {
        if (!obj.contains(f)) fail(std::string("missing field '") + f + "'");
        return obj.at(f);
    }
    std::string text(const char * f) const {
        const json & v = need(f);
        if (v.is_string()) return v.get<std::string>();
        if (v.is_number()) return v.dump();
        fail(std::string("field '") + f + "' is not text");
    }
    bool boolean(const char * f) const {
        const json & v = need(f);
        if (!v.is_boolean()) fail(std::string("field '") + f + "' is not true/false");
        return v.get<bool>();
    }
    double number(const json & v, const std::string & name) const {
        if (!v.is_number()) fail("field '" + name + "' is not a number");
        return v.get<double>();
    }
    std::optional<double> opt_number(const char * f) const {
        const json & v = need(f);
        if (v.is_null()) return std::nullopt;
        return number(v, f);
    }
    std::optional<CoeScores> scores(const char * f) const {
        const json & v = need(f);
        if (v.is_null()) return std::nullopt;
        if (!v.is_object()) fail(std::string("field '") + f + "' is not an object or null");
        CoeScores s;
        const char * keys[] = {"mag", "ang", "r", "c"};
        double * dst[] = {&s.mag, &s.ang, &s.r, &s.c};
        for (int i = 0; i < 4; ++i) {
            const std::string name = std::string(f) + "." + keys[i];
            if (!v.contains(keys[i])) fail("missing field '" + name + "'");
            *dst[i] = number(v.at(keys[i]), name);
        }
        return s;
    }
};

CoeRecord parse_record(const LineReader & r) {
    CoeRecord rec;
    rec.id = r.text("id");
    rec.correct = r.boolean("correct");
    rec.hit_cap = r.boolean("hit_cap");
    rec.tokens = (int) r.number(r.need("tokens"), "tokens");
    rec.maxprob = r.opt_number("maxprob");
    rec.ppl = r.opt_number("ppl");
    rec.entropy = r.opt_number("entropy");
    rec.kv_token = r.scores("kv_token");
    rec.kv_layer = r.scores("kv_layer");
    rec.hidden = r.scores("hidden");
    // optional fields
    const json & o = r.obj;
    if (o.contains("output") && o["output"].is_string()) rec.output = o["output"].get<std::string>();
    if (o.contains("extracted") && o["extracted"].is_string()) rec.extracted = o["extracted"].get<std::string>();
    if (o.contains("hit_eog") && o["hit_eog"].is_boolean()) rec.hit_eog = o["hit_eog"].get<bool>();
    if (o.contains("prompt_tokens") && o["prompt_tokens"].is_number()) rec.prompt_tokens = o["prompt_tokens"].get<int>();
    if (o.contains("seconds") && o["seconds"].is_number()) rec.seconds = o["seconds"].get<double>();
    for (const char * f : {"format", "mode", "reference", "level", "answer_type", "subject", "run"})
        if (o.contains(f) && (o[f].is_string() || o[f].is_number()))
            rec.info[f] = o[f].is_string() ? o[f].get<std::string>() : o[f].dump();
    return rec;
}

}  // namespace

void fill_coe_record(CoeRecord & rec, const CoeSample & s) {
    rec.output = s.text;
    rec.hit_cap = s.hit_cap;
    rec.hit_eog = s.hit_eog;
    rec.tokens = (int) s.tokens.size();
    rec.prompt_tokens = s.n_prompt;
    rec.seconds = s.prefill_seconds + s.decode_seconds;
    rec.maxprob = s.maxprob;
    rec.ppl = s.perplexity;
    rec.entropy = s.entropy;
    rec.kv_token = s.kv_token;
    rec.kv_layer = s.kv_layer;
    rec.hidden = s.hidden;
}

std::string coe_record_json(const CoeRecord & rec) {
    ojson j;
    j["id"] = rec.id;
    for (const auto & [k, v] : rec.info) j[k] = v;
    j["output"] = rec.output;
    j["extracted"] = rec.extracted ? ojson(*rec.extracted) : ojson(nullptr);
    j["correct"] = rec.correct;
    j["hit_cap"] = rec.hit_cap;
    j["hit_eog"] = rec.hit_eog;
    j["tokens"] = rec.tokens;
    j["prompt_tokens"] = rec.prompt_tokens;
    j["seconds"] = rec.seconds;
    j["maxprob"] = opt_num(rec.maxprob);
    j["ppl"] = opt_num(rec.ppl);
    j["entropy"] = opt_num(rec.entropy);
    j["kv_token"] = scores_json(rec.kv_token);
    j["kv_layer"] = scores_json(rec.kv_layer);
    j["hidden"] = scores_json(rec.hidden);
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::vector<CoeRecord> read_coe_records(const std::string & path, bool tolerate_torn_tail, size_t * valid_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot open records file " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string all = ss.str();
    std::vector<CoeRecord> out;
    size_t start = 0, good = 0;
    for (int line_no = 1; start < all.size(); ++line_no) {
        size_t end = all.find('\n', start);
        const bool torn = end == std::string::npos;
        if (torn) end = all.size();
        const std::string line = all.substr(start, end - start);
        const size_t next = torn ? end : end + 1;
        if (line.find_first_not_of(" \t\r") == std::string::npos) {
            start = next;
            good = next;
            continue;
        }
        json obj;
        try {
            obj = json::parse(line);
        } catch (const json::exception & e) {
            if (torn && tolerate_torn_tail) break;
            throw Error(path + ":" + std::to_string(line_no) + ": malformed JSON (" + e.what() + ")");
        }
        if (!obj.is_object()) throw Error(path + ":" + std::to_string(line_no) + ": a record must be a JSON object");
        out.push_back(parse_record(LineReader{path, line_no, obj}));
        start = next;
        good = next;
    }
    if (valid_bytes) *valid_bytes = good;
    return out;
}

const std::vector<CoeScoreName> & coe_score_names() {
    static const std::vector<CoeScoreName> names = {
        {"maxprob", "Maxprob"},
        {"ppl", "1/Perplexity"},
        {"entropy", "1/Entropy"},
        {"kv_token.mag", "KV-CoE token Mag"},
        {"kv_token.ang", "KV-CoE token Ang"},
        {"kv_token.r", "KV-CoE token R"},
        {"kv_token.c", "KV-CoE token C"},
        {"kv_layer.r", "KV-CoE layer R"},
        {"kv_layer.c", "KV-CoE layer C"},
        {"hidden.r", "Hidden CoE R"},
        {"hidden.c", "Hidden CoE C"},
        {"neg_tokens", "Length baseline (−tokens)"},
    };
    return names;
}

std::vector<std::optional<double>> coe_record_scores(const CoeRecord & r) {
    auto inv = [](const std::optional<double> & v, double eps) -> std::optional<double> {
        if (!v || !(*v + eps > 0)) return std::nullopt;
        return 1.0 / (*v + eps);
    };
    auto get = [](const std::optional<CoeScores> & s, double CoeScores::*f) -> std::optional<double> {
        if (!s) return std::nullopt;
        return (*s).*f;
    };
    return {r.maxprob,
            inv(r.ppl, 0.0),
            inv(r.entropy, 1e-12),
            get(r.kv_token, &CoeScores::mag),
            get(r.kv_token, &CoeScores::ang),
            get(r.kv_token, &CoeScores::r),
            get(r.kv_token, &CoeScores::c),
            get(r.kv_layer, &CoeScores::r),
            get(r.kv_layer, &CoeScores::c),
            get(r.hidden, &CoeScores::r),
            get(r.hidden, &CoeScores::c),
            std::optional<double>(-(double) r.tokens)};
}

}  // namespace kvlens
