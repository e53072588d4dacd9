// The overthinking profile: Qwen3's non-thinking prefix with a worked fast answer, and a slow think that
// re-checks its first solution in extra rounds (include/kvlens/arith_overthink.h).
#include "kvlens/arith_overthink.h"

#include "kvlens/error.h"

namespace kvlens {

const char * const kArithQwen3FastPrefix = "<think>\n\n</think>\n\n";

namespace {
// "|" never starts a scratchpad line; the marker uses only tokens the committed model has seen (docs/MODEL.md)
const char * const kMarkerHead = "|";

std::string two_digits(int v) { return std::string(1, char('0' + v / 10)) + char('0' + v % 10); }
}  // namespace

int arith_recheck_rounds(int level) {
    arith_level_digits(level);  // throws for an unknown level
    static const int rounds[] = {82, 67, 56, 46, 43};
    return rounds[level - 1];
}

std::string arith_recheck_marker(int round, int rounds) {
    if (round < 1 || round > rounds || rounds > 99) {
        throw Error("arith: re-check round " + std::to_string(round) + " of " + std::to_string(rounds));
    }
    // rounds left, this one included: the last round reads "|01|", so stopping is a local test, not a comparison
    return kMarkerHead + two_digits(rounds - round + 1) + "|";
}

std::string arith_recheck_line(const ArithProblem & p, int round, int rounds) {
    // the answer re-stated, nothing re-derived: a line with the scratchpad's "a+b+k=NN" taught the model a second
    // way to fill that pattern and broke its scratchpad (docs/MODEL.md, "Status")
    return arith_recheck_marker(round, rounds) + p.answer + "\n";
}

bool arith_is_recheck_marker(const std::string & line) { return line.rfind(kMarkerHead, 0) == 0; }

std::string arith_fast_work(const ArithProblem & p) {
    // the first kArithFastWorkedLines lines of the scratchpad, written as the think writes them; the columns beyond
    // them are added without a line (a brief answer skips steps)
    const std::vector<std::string> steps = arith_trace_steps(p);
    std::string w;
    for (size_t i = 0; i < steps.size() && int(i) < kArithFastWorkedLines; ++i) w += steps[i];
    return w;
}

int arith_first_solution_lines(const ArithProblem & p) { return int(arith_trace_steps(p).size()); }

std::vector<std::string> arith_overthink_lines(const ArithProblem & p, int rounds) {
    const std::vector<std::string> sol = arith_trace_steps(p);
    std::vector<std::string> lines = sol;
    const int n = rounds < 0 ? arith_recheck_rounds(p.level) : rounds;
    for (int r = 1; r <= n; ++r) lines.push_back(arith_recheck_line(p, r, n));
    return lines;
}

std::string arith_overthink_fast_text(const ArithProblem & p) {
    return std::string(kArithQwen3FastPrefix) + arith_fast_work(p) + p.answer + kArithEndOfTurn;
}

std::string arith_overthink_cut_text(const ArithProblem & p, int n_lines, int rounds) {
    const auto lines = arith_overthink_lines(p, rounds);
    if (n_lines < 0 || n_lines > int(lines.size())) {
        throw Error("arith: cut after line " + std::to_string(n_lines) + " of a " + std::to_string(lines.size()) +
                    "-line think");
    }
    std::string t = kArithSlowPrefix;
    for (int i = 0; i < n_lines; ++i) t += lines[i];
    return t + kArithThinkClose + p.answer + kArithEndOfTurn;
}

std::string arith_overthink_slow_text(const ArithProblem & p, int rounds) {
    return arith_overthink_cut_text(p, int(arith_overthink_lines(p, rounds).size()), rounds);
}

std::string arith_overthink_fast_then_slow_text(const ArithProblem & p, int rounds) {
    return std::string(kArithQwen3FastPrefix) + arith_overthink_slow_text(p, rounds);
}

std::string arith_line_answer(const std::string & line) {
    if (arith_is_recheck_marker(line)) {  // a re-check round states the answer after its marker "|LL|"
        const size_t close = line.find('|', 1);
        std::string digits;
        for (size_t i = close == std::string::npos ? line.size() : close + 1; i < line.size(); ++i) {
            if (line[i] < '0' || line[i] > '9') break;
            digits += line[i];
        }
        return digits;
    }
    const size_t eq = line.find('='), semi = line.find(';');
    if (eq == std::string::npos || semi == std::string::npos || eq + 2 >= semi) return "";
    std::string digits;
    for (size_t i = semi + 1; i < line.size(); ++i) {
        if (line[i] >= '0' && line[i] <= '9') digits += line[i];
    }
    if (digits.empty()) return "";
    return (line[eq + 1] != '0' ? std::string(1, line[eq + 1]) : "") + digits;
}

int arith_count_rechecks(const std::string & text) {
    int n = 0;  // lines that start with the marker head
    for (size_t at = 0; at < text.size();) {
        const size_t end = text.find('\n', at);
        if (text.compare(at, 1, kMarkerHead) == 0) ++n;
        if (end == std::string::npos) break;
        at = end + 1;
    }
    return n;
}

}  // namespace kvlens
