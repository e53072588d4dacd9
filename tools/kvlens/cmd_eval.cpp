// kvlens eval <what> ...: evaluations of result files. Subcommands live in the table below (add "think" etc.).
//   kvlens eval coe R.jsonl [--json F] [--plot roc.svg]: accuracy and AUROC / FPR95 / AUPR of every
//   self-evaluation score in the records of `kvlens coe`.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "kvlens/coe_run.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/metrics.h"
#include "kvlens/plot.h"

using namespace kvlens;

namespace {

// Rows without a score (a degenerate CoE chain, an empty answer) are ranked lowest: they get a value below every
// finite score of that column (all tied), i.e. they are predicted "least likely correct". This keeps every
// sample in every metric, so all scores are compared on the same set.
std::vector<double> fill_nulls(const std::vector<std::optional<double>> & v, int * n_null) {
    double lo = std::numeric_limits<double>::infinity();
    *n_null = 0;
    for (auto & x : v) {
        if (x && std::isfinite(*x)) lo = std::min(lo, *x);
        else ++*n_null;
    }
    const double fill = std::isfinite(lo) ? lo - 1.0 - std::fabs(lo) : 0.0;
    std::vector<double> out;
    out.reserve(v.size());
    for (auto & x : v) out.push_back(x && std::isfinite(*x) ? *x : fill);
    return out;
}

std::string pct(const std::optional<double> & v) {
    if (!v) return "—";
    char b[32];
    std::snprintf(b, sizeof b, "%.2f", *v * 100);
    return b;
}

nlohmann::ordered_json opt(const std::optional<double> & v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

std::vector<std::string> split_csv(const std::string & s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

int eval_coe(int argc, char ** argv) {
    CLI::App app{"accuracy and AUROC / FPR95 / AUPR of every self-evaluation score in kvlens coe records", "kvlens eval coe"};
    std::string path, json_out, plot_out, title = "KV-CoE self-evaluation";
    std::string plot_scores = "maxprob,ppl,entropy,kv_token.r,kv_token.c,kv_layer.r,kv_layer.c,hidden.r,hidden.c,neg_tokens";
    app.add_option("records", path, "records JSONL written by kvlens coe")->required();
    app.add_option("--json", json_out, "also write the results as JSON");
    app.add_option("--plot", plot_out, "draw the ROC curves to an SVG file");
    app.add_option("--plot-scores", plot_scores, "scores on the plot (comma-separated keys)");
    app.add_option("--title", title, "plot title");
    std::string by;
    app.add_option("--by", by, "also print accuracy per value of a record field (level, format, mode)");
    int n_boot = 0;
    uint64_t boot_seed = 1;
    app.add_option("--bootstrap", n_boot, "resamples for 95% AUROC intervals and a paired KV-CoE vs hidden CoE comparison");
    app.add_option("--boot-seed", boot_seed, "seed of the bootstrap resampling");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

    if (!json_out.empty()) check_writable(json_out);
    if (!plot_out.empty()) check_writable(plot_out);
    const auto recs = read_coe_records(path);
    if (recs.empty()) throw Error(path + ": no records");
    if (!by.empty()) {  // a field no record has would print one "(none)" group: a typo, say so
        std::set<std::string> fields;
        for (auto & r : recs)
            for (auto & [k, v] : r.info) fields.insert(k);
        if (!fields.count(by)) {
            std::string have;
            for (auto & f : fields) have += (have.empty() ? "" : ", ") + f;
            throw Error("--by " + by + ": no record has that field (fields: " + (have.empty() ? "none" : have) + ")");
        }
    }
    const auto & names = coe_score_names();
    std::vector<int> labels;
    std::vector<std::vector<std::optional<double>>> cols(names.size());
    int n_cap = 0;
    long n_tok = 0;
    for (auto & r : recs) {
        labels.push_back(r.correct ? 1 : 0);
        n_cap += r.hit_cap ? 1 : 0;
        n_tok += r.tokens;
        auto sc = coe_record_scores(r);
        for (size_t i = 0; i < names.size(); ++i) cols[i].push_back(sc[i]);
    }
    const double acc = *accuracy(labels);
    const int n_pos = (int) std::count(labels.begin(), labels.end(), 1);
    std::printf("records: %zu (%s)\naccuracy: %.2f%% (%d correct, %d wrong); hit the token cap: %d (counted incorrect); "
                "mean tokens: %.1f\n\n",
                recs.size(), path.c_str(), acc * 100, n_pos, (int) recs.size() - n_pos, n_cap, (double) n_tok / recs.size());
    std::vector<std::vector<double>> filled(names.size());
    std::vector<int> nulls(names.size());
    for (size_t i = 0; i < names.size(); ++i) filled[i] = fill_nulls(cols[i], &nulls[i]);
    const AurocBootstrap boot = bootstrap_auroc(filled, labels, n_boot, boot_seed);
    if (boot.n > 0) std::printf("| score | AUROC ↑ | AUROC 95%% CI | FPR95 ↓ | AUPR ↑ | null |\n|---|---|---|---|---|---|\n");
    else std::printf("| score | AUROC ↑ | FPR95 ↓ | AUPR ↑ | null |\n|---|---|---|---|---|\n");

    nlohmann::ordered_json jrows = nlohmann::ordered_json::array();
    std::map<std::string, std::vector<RocPoint>> rocs;
    std::string best;
    double best_auroc = -1;
    std::vector<std::optional<double>> aurocs(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
        const auto & v = filled[i];
        SelfEvalMetrics m = self_eval_metrics(v, labels);
        aurocs[i] = m.auroc;
        auto ap_trap = aupr_trapezoid(v, labels);
        std::string ci;
        if (boot.n > 0) ci = " " + pct(boot.quantile(i, 0.025)) + "–" + pct(boot.quantile(i, 0.975)) + " |";
        std::printf("| %s | %s |%s %s | %s | %d |\n", names[i].label, pct(m.auroc).c_str(), ci.c_str(), pct(m.fpr95).c_str(),
                    pct(m.aupr).c_str(), nulls[i]);
        nlohmann::ordered_json row = {{"key", names[i].key}, {"label", names[i].label}, {"auroc", opt(m.auroc)},
                                      {"fpr95", opt(m.fpr95)}, {"aupr", opt(m.aupr)}, {"aupr_trapezoid", opt(ap_trap)},
                                      {"null", nulls[i]}};
        if (boot.n > 0) row["auroc_ci95"] = {opt(boot.quantile(i, 0.025)), opt(boot.quantile(i, 0.975))};
        jrows.push_back(row);
        rocs[names[i].key] = roc_curve(v, labels);
        if (m.auroc && *m.auroc > best_auroc) best_auroc = *m.auroc, best = names[i].label;
    }
    nlohmann::ordered_json jcmp = nlohmann::ordered_json::array();
    if (boot.n > 0) {
        // paired comparisons on the same resamples: the best KV-CoE R/C score against the best hidden CoE R/C score and
        // the best output-based score (each chosen by its point AUROC)
        auto best_of = [&](const char * prefix1, const char * prefix2) {
            int b = -1;
            for (size_t i = 0; i < names.size(); ++i) {
                std::string k = names[i].key;
                if (k.rfind(prefix1, 0) != 0 && (!prefix2 || k.rfind(prefix2, 0) != 0)) continue;
                const std::string tail = k.substr(k.size() - 2);
                if (tail != ".r" && tail != ".c") continue;  // R and C, the CoE scores of both families
                if (aurocs[i] && (b < 0 || *aurocs[i] > *aurocs[b])) b = (int) i;
            }
            return b;
        };
        const int kv = best_of("kv_", nullptr), hid = best_of("hidden.", nullptr);
        int out = -1;
        for (int i : {0, 1, 2})
            if (aurocs[i] && (out < 0 || *aurocs[i] > *aurocs[out])) out = i;
        std::printf("\npaired bootstrap, %d resamples (ΔAUROC in points, 95%% interval, share of resamples where the first is higher):\n", boot.n);
        for (int other : {hid, out}) {
            if (kv < 0 || other < 0) continue;
            auto d = boot.difference(kv, other);
            std::printf("  %s − %s: %+.2f [%+.2f, %+.2f], first higher in %.1f%%\n", names[kv].label, names[other].label,
                        d.mean * 100, d.lo * 100, d.hi * 100, d.p_first_higher * 100);
            jcmp.push_back({{"a", names[kv].key}, {"b", names[other].key}, {"delta_mean", d.mean}, {"delta_lo", d.lo},
                            {"delta_hi", d.hi}, {"p_a_higher", d.p_first_higher}});
        }
    }
    nlohmann::ordered_json jby;
    if (!by.empty()) {
        // accuracy per group, and AUROC of every score within each group (where both classes occur): a score that only
        // tells groups apart (e.g. easy from hard levels) shows a high pooled AUROC but not within the groups
        std::map<std::string, std::vector<size_t>> groups;
        for (size_t k = 0; k < recs.size(); ++k) {
            auto it = recs[k].info.find(by);
            groups[it == recs[k].info.end() ? "(none)" : it->second].push_back(k);
        }
        std::printf("\n| %s | n | accuracy | hit cap |\n|---|---|---|---|\n", by.c_str());
        for (auto & [g, idx] : groups) {
            int c = 0, cap = 0;
            for (size_t k : idx) c += labels[k], cap += recs[k].hit_cap;
            std::printf("| %s | %zu | %.2f%% | %d |\n", g.c_str(), idx.size(), 100.0 * c / idx.size(), cap);
            jby[g] = {{"n", idx.size()}, {"accuracy", (double) c / idx.size()}, {"hit_cap", cap}};
        }
        std::printf("\nAUROC within each %s (— : one class only):\n\n| score |", by.c_str());
        for (auto & [g, idx] : groups) std::printf(" %s |", g.c_str());
        std::printf("\n|---|");
        for (size_t i = 0; i < groups.size(); ++i) std::printf("---|");
        std::printf("\n");
        for (size_t i = 0; i < names.size(); ++i) {
            std::printf("| %s |", names[i].label);
            for (auto & [g, idx] : groups) {
                std::vector<double> v;
                std::vector<int> l;
                for (size_t k : idx) v.push_back(filled[i][k]), l.push_back(labels[k]);
                auto a = auroc(v, l);
                std::printf(" %s |", pct(a).c_str());
                jby[g]["auroc"][names[i].key] = opt(a);
            }
            std::printf("\n");
        }
    }
    std::printf("\nAUROC, FPR95 and AUPR in %%; correct = positive class, higher score = more likely correct. "
                "AUPR = average precision. Rows without a score (null) rank lowest.\n");
    if (!best.empty()) std::printf("best by AUROC: %s (%.2f)\n", best.c_str(), best_auroc * 100);
    if (n_pos == 0 || n_pos == (int) recs.size())
        std::printf("note: only one class present, AUROC and FPR95 are undefined\n");

    if (!plot_out.empty()) {
        std::vector<RocCurve> curves;
        for (const auto & key : split_csv(plot_scores)) {
            size_t i = 0;
            while (i < names.size() && key != names[i].key) ++i;
            if (i == names.size()) throw Error("--plot-scores: unknown score '" + key + "'");
            curves.push_back({names[i].label, rocs[key]});
        }
        write_svg(plot_out, roc_plot_svg(curves, title));
        std::fprintf(stderr, "eval coe: ROC curves written to %s\n", plot_out.c_str());
    }
    if (!json_out.empty()) {
        write_text_atomic(json_out,
                          nlohmann::ordered_json{{"records", path}, {"n", recs.size()}, {"accuracy", acc}, {"correct", n_pos},
                                                 {"hit_cap", n_cap}, {"mean_tokens", (double) n_tok / recs.size()},
                                                 {"null_rule", "ranked lowest"}, {"bootstrap", boot.n}, {"scores", jrows},
                                                 {"by", jby}, {"comparisons", jcmp}}
                                  .dump(1) +
                              "\n");
    }
    return 0;
}

// The subcommands of `kvlens eval`: name -> (help, function). Add new evaluations here.
const std::map<std::string, cli::Command> & eval_commands() {
    static const std::map<std::string, cli::Command> cmds = {
        {"coe", {"self-evaluation of kvlens coe records: accuracy, AUROC / FPR95 / AUPR per score, ROC plot", eval_coe}},
    };
    return cmds;
}

}  // namespace

static int cmd_eval(int argc, char ** argv) {
    const auto & cmds = eval_commands();
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fprintf(stderr, "usage: kvlens eval <what> [options]\n\nevaluations:\n");
        for (auto & [name, c] : cmds) std::fprintf(stderr, "  %-8s %s\n", name.c_str(), c.help.c_str());
        return argc < 2 ? 1 : 0;
    }
    auto it = cmds.find(argv[1]);
    if (it == cmds.end()) throw Error(std::string("unknown evaluation '") + argv[1] + "' (kvlens eval --help lists them)");
    std::string prog = std::string("kvlens eval ") + argv[1];
    argv[1] = prog.data();
    return it->second.run(argc - 1, argv + 1);
}

KVLENS_COMMAND("eval", "evaluate result files: kvlens eval coe R.jsonl (kvlens eval --help)", cmd_eval);
