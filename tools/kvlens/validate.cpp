// The range of every numeric flag, in one table (see validate.h). A rule names the flag by any of its spellings
// (CLI11's check_name) and, optionally, the command ("kvlens generate"); a command's own rule wins over the
// rule for every command.
#include "validate.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <thread>

#include "kvlens/error.h"

namespace kvlens::cli {
namespace {

struct Rule {
    const char * cmd;   // "" = every command that has the flag
    const char * flag;  // any spelling
    double lo, hi;
    bool lo_open = false, hi_open = false;  // (lo, ...] / [..., hi)
};

constexpr double kBig = 1e9;

const Rule kRules[] = {
    // sampling (add_sampling_flags); -s is handled in args.cpp (-1 = random, as llama.cpp)
    {"", "--temp", 0, 100},
    {"", "--top-k", 0, kBig},
    {"", "--top-p", 0, 1},
    // sessions and batches (add_session_flags, add_batch_flags)
    {"", "--ctx-size", 0, 1 << 22},
    {"", "--batch-size", 1, 1 << 22},
    {"", "--ubatch-size", 1, 1 << 22},
    {"", "--threads", 0, 4096},
    {"", "--n-gpu-layers", -1, 1e6},
    {"", "--n-seq", 1, 256},
    // problem sets, prep and think caps
    {"", "--arith", 0, 1e8},
    {"", "--fast-cap", 1, 1e7},
    {"", "--slow-cap", 1, 1e7},
    {"", "--max-cuts", 0, 1e7},
    {"", "--cut-every", 0, 1e7},
    // generation caps: -1 = until the context ends (llama.cpp's -n -1)
    {"kvlens generate", "--n-predict", -1, kBig},
    {"kvlens kv-dump", "--n-predict", -1, kBig},
    {"kvlens coe", "--max-tokens", -1, kBig},
    {"kvlens coe", "--limit", 0, kBig},
    // probe train
    {"kvlens probe train", "--hidden", 1, 1e6},
    {"kvlens probe train", "--lr", 0, 10, true},
    {"kvlens probe train", "--batch", 1, 1e8},
    {"kvlens probe train", "--epochs", 1, 1e7},
    {"kvlens probe train", "--val-frac", 0, 1, false, true},
    {"kvlens probe train", "--wd", 0, 1},
    {"kvlens probe train", "--patience", 0, 1e7},
    {"kvlens probe train", "--short-cutoff", -1, 1e7},
    // think
    {"kvlens think", "--tau", -1e6, 1e6},
    {"kvlens think", "--delta", 0, 1e6},
    {"kvlens think", "--every", 1, 1e7},
    // eval
    {"kvlens eval coe", "--bootstrap", 0, 1e7},
    // arith
    {"kvlens arith", "--n-problems", 1, 1 << 30},
    // benchmarks
    {"", "--reps", 1, 1e5},
    {"", "--prompt-tokens", 1, 1 << 22},
    {"", "--decode", 1, 1 << 22},
    {"kvlens bench embed", "--n-texts", 0, kBig},
    {"kvlens bench think", "--hidden", 1, 1e6},
    {"kvlens bench think", "--seq-len", 1, 1e6},
    {"kvlens bench classify", "--n-experiments", 1, 1e5},
    {"kvlens bench classify", "--samples-per-label", 0, 1e7},
    {"kvlens bench classify", "--max-test", 0, kBig},
};

std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, v == std::floor(v) && std::fabs(v) < 1e15 ? "%.0f" : "%g", v);
    return b;
}

// The value as a number, or nullopt when it is not one (CLI11's own conversion then reports it).
bool as_number(const std::string & s, double & v) {
    if (s.empty()) return false;
    errno = 0;
    char * end = nullptr;
    v = std::strtod(s.c_str(), &end);
    return end && *end == '\0';
}

CLI::Validator range(const Rule & r) {
    const std::string desc = std::string(r.lo_open ? "(" : "[") + num(r.lo) + ", " + num(r.hi) + (r.hi_open ? ")" : "]");
    return CLI::Validator(
        [r, desc](std::string & s) -> std::string {
            double v;
            if (!as_number(s, v)) return "";
            if (!std::isfinite(v)) return s + " is not a finite number (expected " + desc + ")";
            const bool ok = (r.lo_open ? v > r.lo : v >= r.lo) && (r.hi_open ? v < r.hi : v <= r.hi);
            if (!ok) return s + " is out of range (expected " + desc + ")";
            return "";
        },
        desc);
}

CLI::Validator finite() {
    return CLI::Validator(
        [](std::string & s) -> std::string {
            double v;
            if (as_number(s, v) && !std::isfinite(v)) return s + " is not a finite number";
            return "";
        },
        "");
}

// Unsigned flags without a rule (seeds): strtoull would wrap "-5" around to a huge value.
CLI::Validator not_negative() {
    return CLI::Validator(
        [](std::string & s) -> std::string {
            double v;
            if (as_number(s, v) && v < 0) return s + " is negative (expected a number >= 0)";
            return "";
        },
        "");
}

CLI::Validator warn_threads() {
    return CLI::Validator(
        [](std::string & s) -> std::string {
            double v;
            const unsigned hw = std::thread::hardware_concurrency();
            if (as_number(s, v) && hw > 0 && v > hw)
                std::fprintf(stderr, "kvlens: warning: -t %s is more than the %u cores of this machine (threads will compete)\n",
                             s.c_str(), hw);
            return "";
        },
        "");
}

const Rule * rule_for(const std::string & cmd, const CLI::Option & o) {
    const Rule * any = nullptr;
    for (const Rule & r : kRules) {
        if (!o.check_name(r.flag)) continue;
        if (cmd == r.cmd) return &r;
        if (!*r.cmd && !any) any = &r;
    }
    return any;
}

const CLI::Option * find(const CLI::App & app, const char * name) {
    for (const CLI::Option * o : app.get_options())
        if (o->check_name(name)) return o;
    return nullptr;
}

}  // namespace

void add_flag_rules(CLI::App & app) {
    const std::string cmd = app.get_name();
    for (CLI::Option * o : app.get_options()) {
        if (o->get_items_expected_max() == 0) continue;  // a flag without a value
        o->capture_default_str();                       // --help shows every default
        const std::string type = o->get_type_name();
        const bool numeric = type.rfind("FLOAT", 0) == 0 || type.rfind("INT", 0) == 0 || type.rfind("UINT", 0) == 0;
        if (!numeric) continue;
        if (const Rule * r = rule_for(cmd, *o)) o->check(range(*r));
        else if (type.rfind("FLOAT", 0) == 0) o->check(finite());
        else if (type.rfind("UINT", 0) == 0) o->check(not_negative());
        if (o->check_name("--threads")) o->check(warn_threads());
    }
}

void check_parsed(const CLI::App & app) {
    const CLI::Option * p = find(app, "-p");
    const CLI::Option * f = find(app, "-f");
    if (p && f && p->count() > 0 && f->count() > 0) throw Error("give -p or -f, not both");
    if (f && f->count() > 0) {
        const std::string path = f->as<std::string>();
        struct stat st{};
        if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
            throw Error("-f " + path + ": it is a directory; give a file");
    }
}

bool valid_utf8(const std::string & s) {
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = s[i];
        const int len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : (c >> 4) == 0xE ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (int k = 1; k < len; ++k)
            if (((unsigned char) s[i + k] >> 6) != 2) return false;
        const unsigned char c1 = len > 1 ? (unsigned char) s[i + 1] : 0;
        if (len == 3 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))) return false;  // overlong, surrogate
        if (len == 4 && ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90))) return false;  // overlong, > U+10FFFF
        i += len;
    }
    return true;
}

std::vector<double> parse_numbers(const std::string & s, const char * flag) {
    std::vector<double> v;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');) {
        size_t used = 0;
        double d = NAN;
        try {
            d = std::stod(x, &used);
        } catch (const std::exception &) {
        }
        if (used == 0 || used != x.size() || !std::isfinite(d))  // NaN-safe: "nan", "inf", "5x" are refused
            throw Error(std::string(flag) + ": not a list of finite numbers: '" + s + "'");
        v.push_back(d);
    }
    if (v.empty()) throw Error(std::string(flag) + ": empty list");
    return v;
}

std::vector<int> parse_ints(const std::string & s, const char * flag) {
    std::vector<int> v;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');) {
        try {
            size_t used = 0;
            int i = std::stoi(x, &used);
            if (used != x.size() || i < 1) throw std::invalid_argument(x);
            v.push_back(i);
        } catch (const std::exception &) {
            throw Error(std::string(flag) + ": '" + x + "' is not a positive integer");
        }
    }
    if (v.empty()) throw Error(std::string(flag) + ": empty list");
    return v;
}

}  // namespace kvlens::cli
