// Answer extraction for number answers (GSM8K, MGSM, TheoremQA) and multiple choice (CSQA, Belebele).
// See include/kvlens/answers.h and docs/COE.md.
#include <cctype>
#include <cmath>
#include <string>

#include "kvlens/answers.h"
#include "kvlens/error.h"

namespace kvlens {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return std::isalnum((unsigned char) c) != 0; }

std::string lower(std::string s) {
    for (char & c : s) c = (char) std::tolower((unsigned char) c);
    return s;
}

std::string trim(const std::string & s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace((unsigned char) s[a])) ++a;
    while (b > a && std::isspace((unsigned char) s[b - 1])) --b;
    return s.substr(a, b - a);
}

struct NumSpan {
    size_t begin, end;
};

// One decimal number starting at i (a digit, or a '.' before a digit); returns its end. Grouping commas are
// taken only as ",ddd" groups after a first group of 1-3 digits.
size_t number_end(const std::string & t, size_t i) {
    const size_t n = t.size();
    size_t j = i;
    while (j < n && is_digit(t[j])) ++j;
    if (j - i >= 1 && j - i <= 3) {
        while (j + 3 < n && t[j] == ',' && is_digit(t[j + 1]) && is_digit(t[j + 2]) && is_digit(t[j + 3]) &&
               (j + 4 == n || !is_digit(t[j + 4])))
            j += 4;
    }
    if (j + 1 < n && t[j] == '.' && is_digit(t[j + 1])) {
        ++j;
        while (j < n && is_digit(t[j])) ++j;
    }
    return j;
}

std::vector<NumSpan> scan_numbers(const std::string & t) {
    std::vector<NumSpan> spans;
    const size_t n = t.size();
    for (size_t i = 0; i < n;) {
        const bool start = is_digit(t[i]) || (t[i] == '.' && i + 1 < n && is_digit(t[i + 1]));
        if (!start) {
            ++i;
            continue;
        }
        size_t b = i;
        // a '-' right before the number is its sign unless it follows a word or a closing bracket ("5-3")
        if (b > 0 && t[b - 1] == '-' && (b == 1 || !(is_alnum(t[b - 2]) || t[b - 2] == ')' || t[b - 2] == '}')))
            --b;
        const size_t e = number_end(t, i);
        spans.push_back({b, e});
        i = e;
    }
    return spans;
}

std::string span_text(const std::string & t, const NumSpan & s) { return t.substr(s.begin, s.end - s.begin); }

// Position right after the last "answer" marker followed by ':' (spaces and '*' allowed around it).
std::optional<size_t> after_answer_colon(const std::string & text) {
    const std::string l = lower(text);
    std::optional<size_t> found;
    for (size_t p = l.find("answer"); p != std::string::npos; p = l.find("answer", p + 1)) {
        size_t j = p + 6;
        while (j < l.size() && (l[j] == ' ' || l[j] == '*')) ++j;
        if (j < l.size() && l[j] == ':') {
            ++j;
            while (j < l.size() && (l[j] == ' ' || l[j] == '*' || l[j] == '\t')) ++j;
            found = j;
        }
    }
    return found;
}

bool numbers_equal(double p, double g, bool integer) {
    if (integer) return std::fabs(p - g) <= 1e-9 * std::fmax(1.0, std::fabs(g));
    if (g == 0) return std::fabs(p) <= 1e-9;
    return std::fabs(p - g) <= 0.04 * std::fabs(g);  // TheoremQA's within_eps
}

// Reads "1,234.5", "1.8e7", "1.8 x 10^7", "1.8 \times 10^{-7}" at t[i] (after optional spaces).
std::optional<std::pair<double, size_t>> read_scientific(const std::string & t, size_t i);

}  // namespace

// ---- plain numbers ------------------------------------------------------------------------------------

std::optional<std::string> normalize_number(const std::string & s_in) {
    std::string s;
    for (char c : trim(s_in))
        if (c != '$' && c != ',' && c != ' ') s += c;
    if (!s.empty() && s.back() == '.') s.pop_back();
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    std::string ip, fp;
    while (i < s.size() && is_digit(s[i])) ip += s[i++];
    if (i < s.size() && s[i] == '.') {
        ++i;
        while (i < s.size() && is_digit(s[i])) fp += s[i++];
    }
    if (i != s.size() || (ip.empty() && fp.empty())) return std::nullopt;
    ip.erase(0, std::min(ip.find_first_not_of('0'), ip.size()));
    if (ip.empty()) ip = "0";
    while (!fp.empty() && fp.back() == '0') fp.pop_back();
    std::string out = ip + (fp.empty() ? "" : "." + fp);
    if (neg && out != "0") out = "-" + out;
    return out;
}

std::vector<std::string> find_numbers(const std::string & text) {
    std::vector<std::string> out;
    for (const NumSpan & s : scan_numbers(text))
        if (auto n = normalize_number(span_text(text, s))) out.push_back(*n);
    return out;
}

// ---- GSM8K / MGSM -------------------------------------------------------------------------------------

std::string gsm8k_reference(const std::string & solution) {
    const size_t p = solution.rfind("####");
    if (p == std::string::npos) throw Error("GSM8K solution has no '####' answer line");
    return trim(solution.substr(p + 4));
}

std::optional<std::string> extract_gsm8k_answer(const std::string & output) {
    auto region = answer_region(output);
    if (!region) return std::nullopt;
    const std::string & t = *region;
    if (auto pos = after_answer_colon(t)) {
        // the rest of the "Answer:" line, or the next non-empty line when the rest is empty
        size_t b = *pos;
        for (;;) {
            const size_t e = std::min(t.find('\n', b), t.size());
            const std::string line = t.substr(b, e - b);
            auto nums = find_numbers(line);
            if (!nums.empty()) return nums.back();
            if (!trim(line).empty() || e >= t.size()) return std::nullopt;
            b = e + 1;
        }
    }
    auto nums = find_numbers(t);
    if (nums.empty()) return std::nullopt;
    return nums.back();
}

bool gsm8k_check(const std::string & output, const std::string & reference) {
    auto ref = normalize_number(reference);
    if (!ref) throw Error("GSM8K reference '" + reference + "' is not a number");
    auto got = extract_gsm8k_answer(output);
    return got && *got == *ref;
}

// ---- TheoremQA ----------------------------------------------------------------------------------------

namespace {

std::optional<std::pair<double, size_t>> read_scientific(const std::string & t, size_t i) {
    while (i < t.size() && t[i] == ' ') ++i;
    auto spans = scan_numbers(t.substr(i));
    if (spans.empty() || spans[0].begin != 0) return std::nullopt;
    auto mant = normalize_number(t.substr(i, spans[0].end));
    if (!mant) return std::nullopt;
    double v = std::stod(*mant);
    size_t j = i + spans[0].end;
    // exponent: e±d | (x|\times|×|*|\cdot) 10^{±d} | 10^±d
    size_t k = j;
    if (k < t.size() && (t[k] == 'e' || t[k] == 'E')) {
        size_t m = k + 1;
        if (m < t.size() && (t[m] == '+' || t[m] == '-')) ++m;
        if (m < t.size() && is_digit(t[m])) {
            size_t q = m;
            while (q < t.size() && is_digit(t[q])) ++q;
            return std::make_pair(v * std::pow(10.0, std::stod(t.substr(k + 1, q - k - 1))), q);
        }
        return std::make_pair(v, j);
    }
    while (k < t.size() && t[k] == ' ') ++k;
    size_t after_op = std::string::npos;
    for (const char * op : {"\\times", "\\cdot", "\xC3\x97", "x", "*"}) {
        const std::string o(op);
        if (t.compare(k, o.size(), o) == 0) {
            after_op = k + o.size();
            break;
        }
    }
    if (after_op == std::string::npos) return std::make_pair(v, j);
    k = after_op;
    while (k < t.size() && t[k] == ' ') ++k;
    if (t.compare(k, 3, "10^") != 0) return std::make_pair(v, j);
    k += 3;
    const bool brace = k < t.size() && t[k] == '{';
    if (brace) ++k;
    size_t m = k;
    if (m < t.size() && (t[m] == '+' || t[m] == '-')) ++m;
    size_t q = m;
    while (q < t.size() && is_digit(t[q])) ++q;
    if (q == m) return std::make_pair(v, j);
    const double e = std::stod(t.substr(k, q - k));
    if (brace && q < t.size() && t[q] == '}') ++q;
    return std::make_pair(v * std::pow(10.0, e), q);
}

// Where TheoremQA's answer is: after the last "answer is", in the last \boxed{}, or the whole region.
// first_number: the answer is the first number of the returned text (else the last).
std::optional<std::string> theoremqa_answer_text(const std::string & output, bool & first_number) {
    auto region = answer_region(output);
    if (!region) return std::nullopt;
    std::string t = *region;
    const size_t p = lower(t).rfind("answer is");
    first_number = p != std::string::npos;
    if (first_number) t = t.substr(p + 9);
    if (auto b = last_boxed(t)) {
        first_number = true;
        return *b;
    }
    return t;
}

std::optional<size_t> find_word(const std::string & l, const std::string & w) {
    for (size_t p = l.find(w); p != std::string::npos; p = l.find(w, p + 1)) {
        const bool left = p == 0 || !is_alnum(l[p - 1]);
        const bool right = p + w.size() >= l.size() || !is_alnum(l[p + w.size()]);
        if (left && right) return p;
    }
    return std::nullopt;
}

std::vector<double> parse_list(const std::string & s) {
    std::vector<double> out;
    size_t b = 0;
    while (b <= s.size()) {
        const size_t e = std::min(s.find(',', b), s.size());
        auto v = parse_scientific(s.substr(b, e - b));
        if (!v) return {};
        out.push_back(*v);
        b = e + 1;
    }
    return out;
}

}  // namespace

std::optional<double> parse_scientific(const std::string & s) {
    const std::string t = trim(s);
    auto r = read_scientific(t, 0);
    if (!r) return std::nullopt;
    std::string rest = trim(t.substr(r->second));
    if (rest == ".") rest.clear();
    if (!rest.empty()) return std::nullopt;
    return r->first;
}

std::optional<std::string> extract_theoremqa_answer(const std::string & output, const std::string & answer_type) {
    bool first = false;
    auto at = theoremqa_answer_text(output, first);
    if (!at) return std::nullopt;
    const std::string & t = *at;
    const std::string l = lower(t);
    if (answer_type == "bool") {
        std::optional<size_t> yes, no;
        for (const char * w : {"true", "yes"})
            if (auto p = find_word(l, w); p && (!yes || *p < *yes)) yes = p;
        for (const char * w : {"false", "no"})
            if (auto p = find_word(l, w); p && (!no || *p < *no)) no = p;
        if (!yes && !no) return std::nullopt;
        return (yes && (!no || *yes < *no)) ? "True" : "False";
    }
    if (answer_type == "integer" || answer_type == "float") {
        auto spans = scan_numbers(t);
        if (spans.empty()) return std::nullopt;
        const NumSpan & s = first ? spans.front() : spans.back();
        auto r = read_scientific(t, s.begin);
        if (!r) return std::nullopt;
        return trim(t.substr(s.begin, r->second - s.begin));
    }
    if (answer_type == "list of integer" || answer_type == "list of float") {
        const size_t a = t.find('[');
        const size_t b = a == std::string::npos ? a : t.find(']', a);
        if (b == std::string::npos) return std::nullopt;
        return t.substr(a, b - a + 1);
    }
    if (answer_type == "option") {
        for (size_t p = l.find('('); p != std::string::npos; p = l.find('(', p + 1))
            if (p + 2 < l.size() && l[p + 1] >= 'a' && l[p + 1] <= 'd' && l[p + 2] == ')') return l.substr(p, 3);
        return std::nullopt;
    }
    throw Error("TheoremQA: unknown answer_type '" + answer_type + "'");
}

bool theoremqa_check(const std::string & output, const std::string & reference, const std::string & answer_type) {
    auto got = extract_theoremqa_answer(output, answer_type);  // throws on an unknown answer_type
    if (!got) return false;
    const std::string ref = trim(reference);
    if (answer_type == "bool") return lower(*got) == lower(ref);
    if (answer_type == "option") return lower(*got) == lower(ref);
    const bool integer = answer_type == "integer" || answer_type == "list of integer";
    if (answer_type == "integer" || answer_type == "float") {
        auto g = parse_scientific(ref);
        if (!g) throw Error("TheoremQA reference '" + reference + "' is not a number");
        auto p = parse_scientific(*got);
        return p && numbers_equal(*p, *g, integer);
    }
    auto g = parse_list(ref.size() >= 2 ? ref.substr(1, ref.size() - 2) : "");
    if (g.empty()) throw Error("TheoremQA reference '" + reference + "' is not a list of numbers");
    auto p = parse_list(got->substr(1, got->size() - 2));
    if (p.size() != g.size()) return false;
    for (size_t i = 0; i < g.size(); ++i)
        if (!numbers_equal(p[i], g[i], integer)) return false;
    return true;
}

// ---- multiple choice ----------------------------------------------------------------------------------

std::optional<char> extract_choice(const std::string & output, const std::string & letters, bool digits_ok) {
    auto region = answer_region(output);
    if (!region) return std::nullopt;
    std::string t;
    for (char c : *region)
        if (c != '$' && c != '(' && c != ')' && c != '*') t += c;
    auto choice_at = [&](size_t p) -> std::optional<char> {
        if (p >= t.size() || (p + 1 < t.size() && is_alnum(t[p + 1]))) return std::nullopt;
        const char c = (char) std::toupper((unsigned char) t[p]);
        if (letters.find(c) != std::string::npos) return c;
        if (digits_ok && c >= '1' && c < '1' + (int) letters.size()) return letters[c - '1'];
        return std::nullopt;
    };
    const std::string l = lower(t);
    std::optional<char> found;
    for (size_t p = l.find("answer"); p != std::string::npos; p = l.find("answer", p + 1)) {
        size_t j = p + 6;
        while (j < l.size() && l[j] == ' ') ++j;
        if (j < l.size() && l[j] == ':') ++j;
        else if (l.compare(j, 2, "is") == 0) j += 2;
        else continue;
        while (j < l.size() && l[j] == ' ') ++j;
        if (auto c = choice_at(j)) found = c;
    }
    if (found) return found;
    std::string lone = trim(t);
    if (!lone.empty() && lone.back() == '.') lone.pop_back();
    if (lone.size() == 1) {
        t = lone;
        return choice_at(0);
    }
    return std::nullopt;
}

bool choice_check(const std::string & output, const std::string & reference, const std::string & letters,
                  bool digits_ok) {
    const std::string r = trim(reference);
    if (r.size() != 1) throw Error("choice reference '" + reference + "' is not a single letter or digit");
    char want = (char) std::toupper((unsigned char) r[0]);
    if (want >= '1' && want < '1' + (int) letters.size()) want = letters[want - '1'];
    if (letters.find(want) == std::string::npos)
        throw Error("choice reference '" + reference + "' is not one of " + letters);
    auto got = extract_choice(output, letters, digits_ok);
    return got && *got == want;
}

}  // namespace kvlens
