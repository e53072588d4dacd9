// Table 3 and its companions from per-problem runs (include/kvlens/think_table.h).
#include "kvlens/think_table.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "kvlens/metrics.h"

namespace kvlens {

namespace {

void appendf(std::string & out, const char * fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    const int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        std::string b(size_t(n) + 1, '\0');
        std::vsnprintf(&b[0], b.size(), fmt, ap2);
        b.resize(size_t(n));
        out += b;
    }
    va_end(ap2);
}

StudyRun study_run(const ThinkRun & r) { return StudyRun{double(r.r.generated), double(r.r.generated_paper), r.ok}; }

// The initial-only row's run: the fixed-mode run of the online run's first mode (greedy decoding).
const ThinkRun & initial_run(const ThinkTableItem & x, const ThinkRun & online) {
    return online.r.first_mode == ThinkMode::Fast ? x.fast : x.slow;
}

ThinkStudyTable study_table(const std::vector<ThinkTableItem> & items, const ThinkTableConfig & c) {
    ThinkStudyTable st;
    std::vector<StudyProblem> sp;
    const std::string who = router_name(c.classifier), who2 = c.compare ? router_name(*c.compare) + " (compared)" : "";
    StudyRow r_init(who + ", initial only"), r_online(who + ", initial + online switch"), r_paper(who + ", paper mode");
    StudyRow r2_init(who2 + ", initial only"), r2_online(who2 + ", initial + online switch");
    RouterShape & shape = st.shape;
    int n_fast_first = 0, n_fast_sw = 0, n_slow_sw = 0;
    for (const ThinkTableItem & x : items) {
        sp.push_back({x.level, study_run(x.fast), study_run(x.slow), x.cuts});
        r_init.add(study_run(initial_run(x, x.online)));
        r_online.add(study_run(x.online));
        if (x.paper) r_paper.add(study_run(*x.paper));
        if (x.online2) {
            r2_init.add(study_run(initial_run(x, *x.online2)));
            r2_online.add(study_run(*x.online2));
        }
        const bool ff = x.online.r.first_mode == ThinkMode::Fast;
        n_fast_first += ff;
        if (x.online.r.switched) {
            (ff ? shape.fast_switch_at : shape.slow_switch_at).push_back(x.online.r.switch_at);
            (ff ? n_fast_sw : n_slow_sw) += 1;
        }
    }
    const int n = (int) items.size();
    shape.fast_rate = n ? double(n_fast_first) / n : 0;
    shape.fast_switch_rate = n_fast_first ? double(n_fast_sw) / n_fast_first : 0;
    shape.slow_switch_rate = n - n_fast_first ? double(n_slow_sw) / (n - n_fast_first) : 0;
    std::vector<StudyRow> & rows = st.rows;
    rows = {always_fast_row(sp), always_slow_row(sp), r_init, r_online};
    if (c.params.paper_mode) rows.push_back(r_paper);
    rows.push_back(oracle_row(sp));
    rows.push_back(random_router_row(sp, shape));
    st.i_oracle = rows.size() - 2;
    st.i_random = rows.size() - 1;
    if (c.compare) {
        rows.push_back(r2_init);
        rows.push_back(r2_online);
    }
    for (double th : c.thetas) st.trial.push_back(trial_exit_row(sp, th));
    rows.insert(rows.end(), st.trial.begin(), st.trial.end());
    for (auto & r : rows) bootstrap(r);
    for (const auto & p : sp) st.n_cuts += p.cuts.size();

    const StudyRow & oracle = rows[st.i_oracle];
    const double slow_tok = rows[st.i_slow].mean_tokens(), saved_oracle = slow_tok - oracle.mean_tokens();
    auto share = [&](const std::string & name, const StudyRow & r) {
        const double saved = slow_tok - r.mean_tokens();
        st.shares.push_back({name, saved_oracle > 0 ? 100 * saved / saved_oracle : 0,
                             slow_tok / std::max(1e-9, r.mean_tokens()), slow_tok / std::max(1e-9, oracle.mean_tokens()),
                             r.accuracy() - rows[st.i_slow].accuracy(), oracle.accuracy() - rows[st.i_slow].accuracy()});
    };
    share(who, r_online);
    if (c.compare) share(who2, r2_online);

    PlotSeries trial{"trial-answer exit (theta sweep)", {}, {}, true, true};
    for (const auto & r : st.trial) {
        trial.x.push_back(r.mean_tokens());
        trial.y.push_back(r.accuracy());
    }
    st.series.push_back(trial);
    st.series.push_back({"oracle", {oracle.mean_tokens()}, {oracle.accuracy()}, false, true});
    const StudyRow & rr = rows[st.i_random];
    st.series.push_back({"random router", {rr.mean_tokens()}, {rr.accuracy()}, false, true});
    st.series.push_back({who + ", initial + online", {r_online.mean_tokens()}, {r_online.accuracy()}, false, true});
    if (c.compare) st.series.push_back({who2 + ", initial + online", {r2_online.mean_tokens()}, {r2_online.accuracy()}, false, true});
    return st;
}

}  // namespace

ThinkPolicy tau_rule(const ThinkParams & p, double tau) {
    ThinkParams q = p;
    q.tau = tau;
    q.give_up = INFINITY;
    return ThinkPolicy(q);
}

ThinkPolicy give_up_rule(const ThinkParams & p, double give_up) {
    ThinkParams q = p;
    q.give_up = give_up;
    return ThinkPolicy(q);
}

std::string router_name(const ProbeMeta & m) {
    return m.window.source == EmbedSource::Hidden ? "hidden-state classifier" : "KV classifier";
}

ThinkTable think_table(const std::vector<ThinkTableItem> & items, const ThinkTableConfig & c) {
    ThinkTable t;
    t.n = (int) items.size();
    std::vector<ThinkPolicy> gu_rule, t_rule;
    for (double g : c.give_ups) {
        char b[96];
        std::snprintf(b, sizeof b, "initial only + give-up (fast if score >= %g)", g);
        t.give_up.push_back(PolicyStats{b});
        gu_rule.push_back(give_up_rule(c.params, g));
    }
    if (c.sweep) {
        for (double tau : c.taus) {
            t_rule.push_back(tau_rule(c.params, tau));
            t.init_grid[tau].name = "initial only";
            for (double dl : c.deltas) t.grid[{tau, dl}];
        }
    }
    std::vector<double> conf, conf_slow, diff;
    std::vector<int> lab, lab_slow, lab_fast;
    for (const ThinkTableItem & x : items) {
        const ThinkRun &f = x.fast, &sl = x.slow, &on = x.online;
        const double score = on.r.initial_score;
        const ThinkRun & init = initial_run(x, on);
        t.fast.add(f.r, f.ok);
        t.slow.add(sl.r, sl.ok);
        ThinkResult ir = init.r;
        ir.initial_score = score;
        t.init.add(ir, init.ok);
        t.online.add(on.r, on.ok);
        t.oracle.add(f.ok ? f.r : sl.r, f.ok || sl.ok);
        const bool only_slow = sl.ok && !f.ok;
        t.oracle_gu.add(only_slow ? sl.r : f.r, only_slow ? sl.ok : f.ok);
        for (size_t g = 0; g < c.give_ups.size(); ++g) {
            const bool fast = gu_rule[g].initial(score) == ThinkMode::Fast;
            t.give_up[g].add(fast ? f.r : sl.r, fast ? f.ok : sl.ok);
        }
        if (x.level > 0) {
            auto & bl = t.by_level[x.level];
            bl[0].add(f.r, f.ok);
            bl[1].add(sl.r, sl.ok);
            bl[2].add(ir, init.ok);
            bl[3].add(on.r, on.ok);
        }
        if (on.r.confidence) { conf.push_back(*on.r.confidence); lab.push_back(on.ok); }
        if (sl.r.confidence) { conf_slow.push_back(*sl.r.confidence); lab_slow.push_back(sl.ok); }
        diff.push_back(-score);
        lab_fast.push_back(f.ok);
        if (x.paper) t.paper.add(x.paper->r, x.paper->ok);
        if (c.sweep) {
            for (size_t ti = 0; ti < c.taus.size(); ++ti) {
                const bool fast_first = t_rule[ti].initial(score) == ThinkMode::Fast;
                t.init_grid[c.taus[ti]].add(fast_first ? f.r : sl.r, fast_first ? f.ok : sl.ok);
                for (double dl : c.deltas) {
                    const ThinkRun & s = x.sweep.at({fast_first ? 0 : 1, dl});
                    t.grid[{c.taus[ti], dl}].add(s.r, s.ok);
                }
            }
        }
    }
    t.rows = {t.fast, t.slow, t.init, t.online};
    if (c.params.paper_mode) t.rows.push_back(t.paper);
    t.rows.push_back(t.oracle);
    for (auto & g : t.give_up) t.rows.push_back(g);
    if (!c.give_ups.empty()) t.rows.push_back(t.oracle_gu);
    t.auroc_online = auroc(conf, lab);
    t.auroc_slow = auroc(conf_slow, lab_slow);
    t.auroc_score = auroc(diff, lab_fast);
    if (c.study) t.study = study_table(items, c);

    // the plot: the sweep's lines, the study's points, the fixed modes
    if (c.sweep) {
        PlotSeries si{"initial only", {}, {}, true, true};
        for (double tau : c.taus) {
            si.x.push_back(t.init_grid.at(tau).mean_tokens());
            si.y.push_back(t.init_grid.at(tau).accuracy());
        }
        t.plot.push_back(si);
        for (double d : c.deltas) {
            PlotSeries sd{"online, delta " + std::to_string((int) d), {}, {}, true, true};
            for (double tau : c.taus) {
                sd.x.push_back(t.grid.at({tau, d}).mean_tokens());
                sd.y.push_back(t.grid.at({tau, d}).accuracy());
            }
            t.plot.push_back(sd);
        }
        if (!t.give_up.empty()) {
            PlotSeries sg{"initial + give-up (G sweep)", {}, {}, true, true};
            for (auto & g : t.give_up) {
                sg.x.push_back(g.mean_tokens());
                sg.y.push_back(g.accuracy());
            }
            t.plot.push_back(sg);
        }
    }
    if (c.sweep || t.study) {
        if (t.study) t.plot.insert(t.plot.end(), t.study->series.begin(), t.study->series.end());
        t.plot.push_back({"always-fast", {t.fast.mean_tokens()}, {t.fast.accuracy()}, false, true});
        t.plot.push_back({"always-slow", {t.slow.mean_tokens()}, {t.slow.accuracy()}, false, true});
    }
    return t;
}

std::string format_think_report(const ThinkTable & t, const ThinkTableConfig & c) {
    std::string out;
    const ThinkParams & P = c.params;
    appendf(out, "Table 3 on %d problems (tau %.0f, delta %.0f, every %d; caps fast %d / slow %d)\n", t.n, P.tau,
            P.delta, P.every, P.fast_cap, P.slow_cap);
    const ProbeMeta & cm = c.classifier;
    appendf(out, "classifier: %s, %s features, labels %s%s, MLP %d->%d->1, %d train / %d val rows, val MSE %.1f\n\n",
            cm.window.describe().c_str(), cm.variant.c_str(), cm.label_scheme.c_str(),
            cm.switch_aware ? " (switch-aware windows)" : " (prompt windows only)", cm.input_dim, cm.hidden, cm.n_train,
            cm.n_val, cm.val_mse);
    out += format_think_table(t.rows);
    if (!t.by_level.empty()) {
        out += "\nby level (accuracy % / mean generated tokens):\n| level | always-fast | always-slow | initial only | "
               "initial + online | first mode fast % |\n|---:|---|---|---|---|---:|\n";
        for (auto & [lv, b] : t.by_level)
            appendf(out, "| %d | %.0f%% / %.1f | %.0f%% / %.1f | %.0f%% / %.1f | %.0f%% / %.1f | %.0f |\n", lv,
                    b[0].accuracy(), b[0].mean_tokens(), b[1].accuracy(), b[1].mean_tokens(), b[2].accuracy(),
                    b[2].mean_tokens(), b[3].accuracy(), b[3].mean_tokens(), b[3].n ? 100.0 * b[3].fast_first / b[3].n : 0);
    }
    if (t.auroc_online) appendf(out, "\nconfidence AUROC (KV-CoE C on the online answers): %.3f\n", *t.auroc_online);
    if (t.auroc_slow) appendf(out, "confidence AUROC (KV-CoE C on the always-slow answers): %.3f\n", *t.auroc_slow);
    if (t.auroc_score) appendf(out, "classifier AUROC (-score predicting fast-mode correctness): %.3f\n", *t.auroc_score);
    if (t.study) {
        const ThinkStudyTable & s = *t.study;
        appendf(out, "\nrouter study on %d problems (%zu forced answers, %.1f per slow think; every generated token "
                     "counted, trial answers included; the authors' count beside it):\n\n",
                t.n, s.n_cuts, t.n ? double(s.n_cuts) / t.n : 0);
        out += format_study_table(s.rows);
        appendf(out, "random router: fast %.1f%% of problems, slow starts switched %.1f%%, fast starts switched %.1f%% "
                     "(the classifier router's own rates and switch positions; expectation over 200 draws per problem)\n",
                100 * s.shape.fast_rate, 100 * s.shape.slow_switch_rate, 100 * s.shape.fast_switch_rate);
        for (const OracleShare & h : s.shares)
            appendf(out, "the %s router (initial + online) has %.1f%% of the oracle's token saving (%.2fx vs %.2fx fewer "
                         "than always-slow) at %.1f points vs %.1f points from always-slow's accuracy\n",
                    h.name.c_str(), h.share, h.ratio, h.ratio_oracle, h.points, h.points_oracle);
    }
    if (c.sweep) {
        out += "\nsweep (mean generated tokens, accuracy %):\n| tau | initial only | ";
        for (double d : c.deltas) appendf(out, "online delta %.0f | ", d);
        out += "\n|---:|---|";
        for (size_t k = 0; k < c.deltas.size(); ++k) out += "---|";
        out += "\n";
        for (double tau : c.taus) {
            const PolicyStats & si = t.init_grid.at(tau);
            appendf(out, "| %.0f | %.1f tok, %.1f%% | ", tau, si.mean_tokens(), si.accuracy());
            for (double d : c.deltas) {
                const PolicyStats & g = t.grid.at({tau, d});
                appendf(out, "%.1f tok, %.1f%% | ", g.mean_tokens(), g.accuracy());
            }
            out += "\n";
        }
    }
    return out;
}

}  // namespace kvlens
