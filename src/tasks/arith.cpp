// The arithmetic task family: generator, scratchpad/answer renderers, answer checker, the paper's label rule.
#include "kvlens/arith.h"

#include <cctype>
#include <cstdio>

#include "kvlens/error.h"

namespace kvlens {

const char * const kArithFastPrefix = "<think>\n</think>\n\n";
const char * const kArithSlowPrefix = "<think>\n";
const char * const kArithThinkClose = "</think>\n\n";
const char * const kArithEndOfTurn = "<|im_end|>";

namespace {

uint64_t splitmix64(uint64_t & s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void check_level(int level) {
    if (level < kArithMinLevel || level > kArithMaxLevel) {
        throw Error("arith: unknown level " + std::to_string(level) + " (levels are " +
                    std::to_string(kArithMinLevel) + ".." + std::to_string(kArithMaxLevel) + ")");
    }
}

bool is_plain_number(const std::string & s) {
    if (s.empty() || s.size() > 18) return false;
    for (char c : s) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
}

std::string trim(const std::string & s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

}  // namespace

int arith_level_digits(int level) {
    check_level(level);
    static const int digits[] = {1, 2, 3, 4, 4};
    return digits[level - 1];
}

std::vector<int> arith_parse_levels(const std::string & spec) {
    std::vector<int> out;
    for (size_t i = 0; i <= spec.size();) {
        size_t j = spec.find(',', i);
        if (j == std::string::npos) j = spec.size();
        const std::string item = spec.substr(i, j - i);
        int a = 0, b = 0;
        char dash = 0, extra = 0;
        const int n = std::sscanf(item.c_str(), "%d%c%d%c", &a, &dash, &b, &extra);
        if (n == 1) b = a;
        else if (!(n == 3 && dash == '-')) throw Error("--levels: cannot read '" + item + "' (e.g. 1-5, 3 or 2,4)");
        if (a < kArithMinLevel || b > kArithMaxLevel || a > b) {
            throw Error("--levels: '" + item + "' is outside " + std::to_string(kArithMinLevel) + "-" +
                        std::to_string(kArithMaxLevel));
        }
        for (int l = a; l <= b; ++l) out.push_back(l);
        i = j + 1;
    }
    return out;
}

int arith_level_operands(int level) {
    check_level(level);
    return level == 5 ? 3 : 2;
}

std::string arith_level_description(int level) {
    const int d = arith_level_digits(level), k = arith_level_operands(level);
    return "level " + std::to_string(level) + ": sum of " + std::to_string(k) + " numbers of " +
           std::to_string(d) + " digit" + (d > 1 ? "s" : "") + " (" + std::to_string(d) + " scratchpad steps)";
}

ArithProblem arith_generate(int level, uint64_t seed) {
    check_level(level);
    ArithProblem p;
    p.level = level;
    p.seed = seed;
    uint64_t s = seed ^ (0xA5A5A5A5ull * uint64_t(level));
    splitmix64(s);
    const int d = arith_level_digits(level);
    int64_t lo = 1, hi = 10;
    for (int i = 1; i < d; ++i) { lo *= 10; hi *= 10; }
    if (d == 1) lo = 0;
    int64_t sum = 0;
    for (int i = 0; i < arith_level_operands(level); ++i) {
        const int64_t v = lo + int64_t(splitmix64(s) % uint64_t(hi - lo));
        p.operands.push_back(v);
        sum += v;
        p.question += (i ? "+" : "") + std::to_string(v);
    }
    p.answer = std::to_string(sum);
    return p;
}

std::string arith_chat_prompt(const ArithProblem & p) {
    return "<|im_start|>user\n" + p.question + "<|im_end|>\n<|im_start|>assistant\n";
}

// One line per column, least significant first, every field fixed-width so that each token is a copy at a
// constant distance (the line above, or earlier in the same line) or a one-column sum:
//   R1+R2[+R3] '|' a+b[+c]+k=NN ';' S '\n'
// Ri: operand i with the columns already added shifted out (right-aligned, '.' fills); a, b, c: this column's
// digits (the last digit of each Ri); k: the carry in; NN: carry out and result digit; S: the result digits so
// far, most significant first, left-aligned, '.' fills. The answer is the last carry (if non-zero) + the last S.
std::vector<std::string> arith_trace_steps(const ArithProblem & p) {
    check_level(p.level);
    const int d = arith_level_digits(p.level);
    std::vector<std::string> ops;
    for (int64_t v : p.operands) {
        std::string s = std::to_string(v);
        ops.push_back(std::string(d - std::min<int>(d, int(s.size())), '0') + s);
    }
    std::vector<std::string> steps;
    std::string result;  // result digits so far, most significant first
    int carry = 0;
    for (int i = 0; i < d; ++i) {
        std::string line;
        for (size_t j = 0; j < ops.size(); ++j) {
            line += (j ? "+" : "") + std::string(i, '.') + ops[j].substr(0, d - i);
        }
        line += '|';
        int s = carry;
        for (const auto & o : ops) {
            const int digit = o[d - 1 - i] - '0';
            line += char('0' + digit);
            line += '+';
            s += digit;
        }
        line += char('0' + carry);
        line += '=';
        line += char('0' + s / 10);
        line += char('0' + s % 10);
        result.insert(result.begin(), char('0' + s % 10));
        line += ';' + result + std::string(d - result.size(), '.') + '\n';
        steps.push_back(line);
        carry = s / 10;
    }
    return steps;
}

std::string arith_fast_text(const ArithProblem & p) {
    return std::string(kArithFastPrefix) + p.answer + kArithEndOfTurn;
}

std::string arith_slow_text(const ArithProblem & p) {
    return arith_cut_text(p, int(arith_trace_steps(p).size()));
}

std::string arith_cut_text(const ArithProblem & p, int n_steps) {
    const auto steps = arith_trace_steps(p);
    if (n_steps < 0 || n_steps > int(steps.size())) {
        throw Error("arith: cut at step " + std::to_string(n_steps) + " of a " + std::to_string(steps.size()) +
                    "-step trace");
    }
    std::string t = kArithSlowPrefix;
    for (int i = 0; i < n_steps; ++i) t += steps[i];
    return t + kArithThinkClose + p.answer + kArithEndOfTurn;
}

std::string arith_fast_then_slow_text(const ArithProblem & p) {
    return std::string(kArithFastPrefix) + arith_slow_text(p);
}

std::optional<std::string> arith_extract_answer(const std::string & assistant_text) {
    std::string t = assistant_text;
    const std::string eot = kArithEndOfTurn;
    const size_t close = t.rfind("</think>");
    if (close != std::string::npos) {
        t = t.substr(close + 8);
    } else if (t.find("<think>") != std::string::npos) {
        return std::nullopt;  // thinking never closed
    }
    t = trim(t);
    if (t.size() >= eot.size() && t.compare(t.size() - eot.size(), eot.size(), eot) == 0) {
        t = trim(t.substr(0, t.size() - eot.size()));
    }
    const size_t nl = t.rfind('\n');  // a worked answer ("1+6+0=07;...\n8577"): the answer is its last line
    if (nl != std::string::npos) t = trim(t.substr(nl + 1));
    if (!is_plain_number(t)) return std::nullopt;
    return t;
}

std::string arith_require_answer(const std::string & assistant_text) {
    auto a = arith_extract_answer(assistant_text);
    if (!a) {
        std::string shown = assistant_text.size() > 60 ? assistant_text.substr(assistant_text.size() - 60) : assistant_text;
        throw Error("arith: no parsable answer (a plain number after </think>) in \"" + shown + "\"");
    }
    return *a;
}

bool arith_check(const std::string & model_output, const std::string & reference) {
    const std::string ref = trim(reference);
    if (!is_plain_number(ref)) {
        throw Error("arith: malformed reference answer \"" + reference + "\" (expected a non-negative integer)");
    }
    const auto got = arith_extract_answer(model_output);
    if (!got) return false;
    return std::stoll(*got) == std::stoll(ref);
}

int paper_label(bool fast_correct, int fast_tokens, bool slow_correct, int short_cutoff) {
    if (fast_correct) return fast_tokens <= short_cutoff ? 0 : 25;
    return slow_correct ? 75 : 100;
}

}  // namespace kvlens
