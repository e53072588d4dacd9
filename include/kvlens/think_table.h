// The paper's Table 3 from per-problem runs (kvlens think --table; docs/THINK.md): always-fast, always-slow,
// initial only, initial + online switch (and paper mode), the oracle initial decision, give-up rows and the oracle
// with give-up; the table by arith level, the tau/delta sweep grids, the AUROCs, the router study's rows
// (kvlens/think_study.h) and the plot's series. Model-free: the runs are made (or read back) by the caller.
#pragma once
#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvlens/plot.h"
#include "kvlens/probe.h"
#include "kvlens/think.h"
#include "kvlens/think_study.h"

namespace kvlens {

// One run of a problem and whether its answer is right.
struct ThinkRun {
    ThinkResult r;
    bool ok = false;
};

// Everything one problem contributes.
struct ThinkTableItem {
    int level = 0;                    // arith level (0: none, left out of the by-level table)
    ThinkRun fast, slow, online;      // always-fast, always-slow, the classifier's initial + online switch
    std::optional<ThinkRun> paper;    // paper mode (params.paper_mode)
    std::optional<ThinkRun> online2;  // the compared classifier's initial + online switch
    std::vector<ForcedAnswer> cuts;   // study: the answers forced along the slow think
    std::map<std::pair<int, double>, ThinkRun> sweep;  // sweep: (first mode fast ? 0 : 1, delta) -> online run
};

struct ThinkTableConfig {
    ThinkParams params;            // the run's own tau, delta, every, caps, paper_mode
    std::vector<double> give_ups;  // one "initial only + give-up" row per G (and the oracle with give-up)
    bool sweep = false;
    std::vector<double> taus, deltas;
    bool study = false;
    std::vector<double> thetas;           // the study's trial-answer exit thresholds
    ProbeMeta classifier;                 // the header line; the study's row names
    std::optional<ProbeMeta> compare;     // the compared classifier (its online2 runs)
};

// The sweep's initial rule for tau: think's own, without give-up.
ThinkPolicy tau_rule(const ThinkParams & p, double tau);
// `think --give-up G`'s initial rule.
ThinkPolicy give_up_rule(const ThinkParams & p, double give_up);
// "KV classifier" or "hidden-state classifier" by the window's source.
std::string router_name(const ProbeMeta & m);

// One "share of the oracle's saving" line: the router's initial + online row against the study's oracle.
struct OracleShare {
    std::string name;
    double share = 0;                        // % of the oracle's token saving vs always-slow
    double ratio = 0, ratio_oracle = 0;      // always-slow tokens / row tokens
    double points = 0, points_oracle = 0;    // accuracy minus always-slow's
};

struct ThinkStudyTable {
    std::vector<StudyRow> rows;  // printed in this order, bootstrapped
    size_t i_slow = 1, i_oracle = 0, i_random = 0;
    std::vector<StudyRow> trial;  // the trial-answer exit per theta (also in rows)
    RouterShape shape;
    size_t n_cuts = 0;
    std::vector<OracleShare> shares;   // the classifier, then the compared one
    std::vector<PlotSeries> series;    // trial exit, oracle, random router, the routers' online points
};

struct ThinkTable {
    int n = 0;
    PolicyStats fast{"always-fast"}, slow{"always-slow"}, init{"initial only"}, online{"initial + online switch"},
        paper{"initial + switch, paper mode"},
        oracle{"oracle initial decision (fast iff fast is right)"},  // the bound of any prompt-level policy
        oracle_gu{"oracle with give-up (fast unless only slow is right)"};  // the bound with a give-up action
    std::vector<PolicyStats> give_up;  // initial only + give-up >= G, per G (beyond the paper)
    std::vector<PolicyStats> rows;     // Table 3 as printed
    std::map<int, std::array<PolicyStats, 4>> by_level;     // arith level -> fast, slow, initial, online
    std::map<double, PolicyStats> init_grid;                // sweep: tau -> initial only
    std::map<std::pair<double, double>, PolicyStats> grid;  // sweep: (tau, delta) -> online
    std::optional<double> auroc_online, auroc_slow;  // KV-CoE C on the online / always-slow answers
    std::optional<double> auroc_score;               // -score predicting fast-mode correctness
    std::optional<ThinkStudyTable> study;
    std::vector<PlotSeries> plot;  // tokens vs accuracy (sweep or study; else empty)
};

ThinkTable think_table(const std::vector<ThinkTableItem> & items, const ThinkTableConfig & c);

// The text kvlens think --table prints (the plot's path line aside).
std::string format_think_report(const ThinkTable & t, const ThinkTableConfig & c);

}  // namespace kvlens
