// MATH answers: the last \boxed{} and LaTeX answer normalisation. See include/kvlens/answers.h, docs/COE.md.
#include <cctype>
#include <cmath>
#include <string>

#include "kvlens/answers.h"

namespace kvlens {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return std::isalpha((unsigned char) c) != 0; }

void replace_all(std::string & s, const std::string & from, const std::string & to) {
    for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// Index of the '}' closing the group that opens at s[open] == '{' (escaped braces skipped), npos if none.
size_t closing_brace(const std::string & s, size_t open) {
    int depth = 0;
    for (size_t k = open; k < s.size(); ++k) {
        if (s[k] == '\\') {
            ++k;
            continue;
        }
        if (s[k] == '{') ++depth;
        if (s[k] == '}' && --depth == 0) return k;
    }
    return std::string::npos;
}

// "\cmd" only where it is not the start of a longer command name.
void remove_command(std::string & s, const std::string & cmd) {
    for (size_t p = s.find(cmd); p != std::string::npos; p = s.find(cmd, p)) {
        const size_t e = p + cmd.size();
        if (e < s.size() && is_alpha(s[e])) {
            p = e;
            continue;
        }
        s.erase(p, cmd.size());
    }
}

// "\cmd{X}" -> "X" (cmd given with its opening brace, e.g. "\\text{").
void unwrap(std::string & s, const std::string & cmd_brace) {
    for (size_t p = s.find(cmd_brace); p != std::string::npos; p = s.find(cmd_brace, p)) {
        const size_t open = p + cmd_brace.size() - 1, close = closing_brace(s, open);
        if (close == std::string::npos) return;
        s = s.substr(0, p) + s.substr(open + 1, close - open - 1) + s.substr(close + 1);
    }
}

// One argument of \frac or \sqrt at s[i]: a {group} as is, or a single character / command name, braced.
std::string take_arg(const std::string & s, size_t & i) {
    if (i >= s.size()) return "{}";
    if (s[i] == '{') {
        const size_t c = closing_brace(s, i);
        if (c == std::string::npos) {
            std::string rest = s.substr(i);
            i = s.size();
            return rest;
        }
        std::string g = s.substr(i, c - i + 1);
        i = c + 1;
        return g;
    }
    size_t e = i + 1;
    if (s[i] == '\\')
        while (e < s.size() && is_alpha(s[e])) ++e;
    std::string a = "{" + s.substr(i, e - i) + "}";
    i = e;
    return a;
}

// \frac12 -> \frac{1}{2}, \frac{270}7 -> \frac{270}{7}; \sqrt3 -> \sqrt{3} (spaces already removed).
void brace_arguments(std::string & s, const std::string & cmd, int n_args) {
    std::string out;
    size_t i = 0;
    while (i < s.size()) {
        const size_t p = s.find(cmd, i);
        if (p == std::string::npos) {  // no longer command starts with \frac or \sqrt: "\fracab" is \frac{a}{b}
            out += s.substr(i);
            break;
        }
        out += s.substr(i, p - i) + cmd;
        i = p + cmd.size();
        if (cmd == "\\sqrt" && i < s.size() && s[i] == '[') {  // \sqrt[n]{x}
            const size_t c = s.find(']', i);
            if (c == std::string::npos) break;
            out += s.substr(i, c - i + 1);
            i = c + 1;
        }
        for (int a = 0; a < n_args; ++a) out += take_arg(s, i);
    }
    s = out;
}

bool all_digits(const std::string & s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_digit(c)) return false;
    return true;
}

// ^-?\d{1,3}(,\d{3})+(\.\d+)?$ : a number with thousands separators.
bool grouped_number(const std::string & s) {
    size_t i = s.size() && s[0] == '-' ? 1 : 0;
    const size_t dot = s.find('.');
    const std::string ip = s.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    if (dot != std::string::npos && !all_digits(s.substr(dot + 1))) return false;
    const size_t first = ip.find(',');
    if (first == std::string::npos || first == 0 || first > 3) return false;
    for (size_t p = first; p < ip.size(); p += 4)
        if (ip[p] != ',' || p + 4 > ip.size() || !all_digits(ip.substr(p + 1, 3))) return false;
    return all_digits(ip.substr(0, first));
}

// Value of a plain number or an integer fraction (\frac{a}{b}, -\frac{a}{b}); nullopt otherwise.
std::optional<double> numeric_value(const std::string & s) {
    if (s.find(',') != std::string::npos) return std::nullopt;  // a list, not a number
    if (auto n = normalize_number(s)) return std::stod(*n);
    const bool neg = s.rfind("-\\frac{", 0) == 0;
    const std::string f = neg ? s.substr(1) : s;
    if (f.rfind("\\frac{", 0) != 0) return std::nullopt;
    const size_t c1 = closing_brace(f, 5);
    if (c1 == std::string::npos || c1 + 1 >= f.size() || f[c1 + 1] != '{') return std::nullopt;
    const size_t c2 = closing_brace(f, c1 + 1);
    if (c2 != f.size() - 1) return std::nullopt;
    const std::string a = f.substr(6, c1 - 6), b = f.substr(c1 + 2, c2 - c1 - 2);
    if (!all_digits(a) || !all_digits(b) || std::stod(b) == 0) return std::nullopt;
    return (neg ? -1 : 1) * std::stod(a) / std::stod(b);
}

}  // namespace

std::optional<std::string> last_boxed(const std::string & text) {
    size_t p = std::string::npos, len = 0;
    for (const char * cmd : {"\\boxed", "\\fbox"}) {
        const size_t q = text.rfind(cmd);
        if (q != std::string::npos && (p == std::string::npos || q > p)) p = q, len = std::string(cmd).size();
    }
    if (p == std::string::npos) return std::nullopt;
    size_t j = p + len;
    if (j < text.size() && text[j] == '{') {
        const size_t c = closing_brace(text, j);
        if (c == std::string::npos) return std::nullopt;
        return text.substr(j + 1, c - j - 1);
    }
    if (j >= text.size() || text[j] != ' ') return std::nullopt;
    while (j < text.size() && text[j] == ' ') ++j;
    size_t e = j;
    while (e < text.size() && !std::isspace((unsigned char) text[e]) && text[e] != '$') ++e;
    if (e == j) return std::nullopt;
    return text.substr(j, e - j);
}

std::string normalize_math_answer(const std::string & in) {
    std::string s = in;
    replace_all(s, "\n", "");
    for (const char * unit : {"\\text{ ", "\\mbox{ "}) {  // a trailing unit: "5\text{ cm}" -> "5"
        const size_t p = s.find(unit);
        if (p != std::string::npos && p > 0) s.erase(p);
    }
    for (const char * sp : {"\\!", "\\,", "\\;", "\\:", "~"}) replace_all(s, sp, "");
    replace_all(s, "\\dfrac", "\\frac");
    replace_all(s, "\\tfrac", "\\frac");
    for (const char * cmd : {"\\left", "\\right", "\\displaystyle"}) remove_command(s, cmd);
    for (const char * deg : {"^{\\circ}", "^\\circ"}) replace_all(s, deg, "");
    for (const char * sym : {"\\$", "$", "\\%", "%"}) replace_all(s, sym, "");
    for (const char * cmd : {"\\text{", "\\textbf{", "\\textrm{", "\\textit{", "\\textnormal{", "\\mbox{", "\\mathrm{"})
        unwrap(s, cmd);
    std::string t;
    for (char c : s)
        if (!std::isspace((unsigned char) c)) t += c;
    s = t;
    if (!s.empty() && s.back() == '.') s.pop_back();
    if (!s.empty() && s[0] == '.') s = "0" + s;
    replace_all(s, "{.", "{0.");
    if (const size_t eq = s.find('='); eq != std::string::npos && eq <= 2 && s.find('=', eq + 1) == std::string::npos)
        s = s.substr(eq + 1);  // "x=5" -> "5"
    brace_arguments(s, "\\sqrt", 1);
    brace_arguments(s, "\\frac", 2);
    if (const size_t slash = s.find('/'); slash != std::string::npos) {  // "3/4" -> "\frac{3}{4}"
        const bool neg = s[0] == '-';
        const std::string a = s.substr(neg ? 1 : 0, slash - (neg ? 1 : 0)), b = s.substr(slash + 1);
        if (all_digits(a) && all_digits(b)) s = std::string(neg ? "-" : "") + "\\frac{" + a + "}{" + b + "}";
    }
    if (s.find(',') == std::string::npos || grouped_number(s))
        if (auto n = normalize_number(s)) s = *n;
    return s;
}

bool math_equiv(const std::string & a, const std::string & b) {
    const std::string na = normalize_math_answer(a), nb = normalize_math_answer(b);
    if (na == nb) return true;
    auto va = numeric_value(na), vb = numeric_value(nb);
    return va && vb && std::fabs(*va - *vb) <= 1e-9 * std::fmax(1.0, std::fabs(*vb));
}

bool math_check(const std::string & output, const std::string & reference) {
    auto region = answer_region(output);
    if (!region) return false;
    auto boxed = last_boxed(*region);
    return boxed && math_equiv(*boxed, reference);
}

}  // namespace kvlens
