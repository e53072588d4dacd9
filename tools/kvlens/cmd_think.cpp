// kvlens think: adaptive fast/slow thinking with the KVClassifier — one question (-p), a problem set
// (--arith N / --data F --format FMT, -o R.jsonl), the paper's Table 3 (--table) and a tau/delta sweep.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "validate.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/metrics.h"
#include "kvlens/plot.h"
#include "kvlens/sequence.h"
#include "kvlens/think.h"
#include "kvlens/think_study.h"
#include "kvlens/think_table.h"

using namespace kvlens;
using json = nlohmann::ordered_json;

namespace {

std::string answer_of(const ThinkResult & r, const PromptFormat & f) {
    std::string t = r.output;
    size_t p = t.rfind(f.think_close);
    if (p != std::string::npos) t = t.substr(p + f.think_close.size());
    for (const char * eot : {"<|im_end|>", "<｜end▁of▁sentence｜>"}) {
        size_t e = t.find(eot);
        if (e != std::string::npos) t.resize(e);
    }
    size_t a = t.find_first_not_of(" \n\t"), b = t.find_last_not_of(" \n\t");
    return a == std::string::npos ? "" : t.substr(a, b - a + 1);
}

json result_json(const ThinkResult & r, bool ok) {
    json j = {{"first_mode", to_string(r.first_mode)}, {"final_mode", to_string(r.final_mode)}, {"switched", r.switched},
              {"switch_at", r.switch_at}, {"generated", r.generated}, {"generated_paper", r.generated_paper},
              {"control", r.control_tokens}, {"discarded", r.discarded}, {"reprefill", r.reprefill_tokens},
              {"cap", r.hit_cap}, {"correct", ok}, {"seconds", r.seconds}, {"output", r.output}};
    if (std::isfinite(r.initial_score)) j["score"] = r.initial_score;
    if (std::isfinite(r.switch_score)) j["switch_score"] = r.switch_score;
    if (r.gave_up) j["gave_up"] = true;
    if (r.confidence) j["confidence"] = *r.confidence;
    return j;
}

void print_one(const ThinkResult & r, const PromptFormat & f, const ThinkParams & p) {
    std::printf("%s\n", r.output.c_str());
    std::printf("answer: %s\n", answer_of(r, f).c_str());
    if (r.gave_up) std::printf("first mode: fast (score %.1f >= give-up %.0f: predicted wrong in both modes)\n", r.initial_score, p.give_up);
    else if (std::isfinite(r.initial_score)) std::printf("first mode: %s (score %.1f, tau %.0f)\n", to_string(r.first_mode), r.initial_score, p.tau);
    else std::printf("first mode: %s (forced)\n", to_string(r.first_mode));
    if (r.switched)
        std::printf("switch: %s -> %s after %d generated tokens (score %.1f, band 50 +- %.0f)%s\n", to_string(r.first_mode),
                    to_string(r.final_mode), r.switch_at, r.switch_score, p.delta, p.paper_mode ? " [paper mode: cut + re-prefill]" : "");
    else
        std::printf("switch: none\n");
    std::printf("tokens: %d generated (authors' count %d), %d control, %d prompt%s%s\n", r.generated, r.generated_paper,
                r.control_tokens, r.prompt_tokens,
                r.reprefill_tokens ? (", " + std::to_string(r.reprefill_tokens) + " re-prefilled").c_str() : "",
                r.hit_cap ? " [hit the cap]" : "");
    if (r.confidence) std::printf("confidence (KV-CoE C, layer axis): %.4f\n", *r.confidence);
}

// A run read back from its record (result_json's inverse, for the fields the tables use): think -o resumes.
ThinkRun run_from_json(const json & j) {
    ThinkRun x;
    ThinkResult & r = x.r;
    auto mode = [&](const char * k) { return j.at(k).get<std::string>() == "fast" ? ThinkMode::Fast : ThinkMode::Slow; };
    r.first_mode = mode("first_mode");
    r.final_mode = mode("final_mode");
    r.switched = j.at("switched").get<bool>();
    r.switch_at = j.at("switch_at").get<int>();
    r.generated = j.at("generated").get<int>();
    r.generated_paper = j.at("generated_paper").get<int>();
    r.control_tokens = j.at("control").get<int>();
    r.discarded = j.at("discarded").get<int>();
    r.reprefill_tokens = j.at("reprefill").get<int>();
    r.hit_cap = j.at("cap").get<bool>();
    r.seconds = j.at("seconds").get<double>();
    r.output = j.at("output").get<std::string>();
    if (j.contains("score")) r.initial_score = j["score"].get<double>();
    if (j.contains("switch_score")) r.switch_score = j["switch_score"].get<double>();
    r.gave_up = j.value("gave_up", false);
    if (j.contains("confidence")) r.confidence = j["confidence"].get<double>();
    x.ok = j.at("correct").get<bool>();
    return x;
}

// One run of a problem with the run's own settings.
ThinkRun run_with(ThinkRunner & tr, const ThinkItem & it, const ThinkParams & p) {
    ThinkRun x;
    x.r = tr.run(it.row.prompt, p);
    x.ok = check_item(it, x.r.output);
    return x;
}

ThinkParams with_policy(ThinkParams p, ThinkPolicyKind kind, bool online, bool paper) {
    p.policy = kind;
    p.online = online;
    p.paper_mode = paper;
    return p;
}

// Everything one problem contributes: the single policy's run, or Table 3's runs (kvlens/think_table.h).
struct ItemRuns : ThinkTableItem {
    bool resumed = false;
    ThinkRun single;
};

}  // namespace

static int cmd_think(int argc, char ** argv) {
    CLI::App app{"adaptive fast/slow thinking with the KVClassifier (online switch, cache kept)", "kvlens think"};
    cli::CommonArgs a;
    std::string clf_path, prompt, file, out, policy = "classifier";
    cli::ProblemSetArgs ps;
    std::string sweep_tau, sweep_delta, plot, give_up;
    bool table = false, study = false, no_online = false, no_conf = false, train_split = false;
    std::string sweep_theta = "0.5,0.7,0.8,0.9,0.95,0.99";
    ThinkParams P;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    cli::add_sampling_flags(app, a);
    app.add_option("--classifier", clf_path, "KVClassifier GGUF (kvlens probe train)");
    std::string clf2_path;
    app.add_option("--compare-classifier", clf2_path,
                   "with --study: a second classifier (e.g. the hidden-state router, probe prep --source hidden) run "
                   "online on the same problems; its rows join the study");
    app.add_option("-p,--prompt", prompt, "one question");
    app.add_option("-f,--file", file, "read the question from a file");
    cli::add_problem_set_flags(app, ps, "N held-out arithmetic problems (seeds with the held-out bit)");
    cli::PromptArgs pa;
    cli::add_prompt_flags(app, pa);
    app.add_flag("--train-split", train_split, "arith: training seeds instead of held-out ones");
    app.add_option("--policy", policy, "classifier | fast | slow");
    app.add_option("--tau", P.tau, "initial decision: fast if score < tau");
    app.add_option("--delta", P.delta, "online: switch when the score leaves 50 +- delta");
    app.add_option("--give-up", give_up,
                   "beyond the paper: also answer fast when score >= G (predicted 'both modes wrong'); with --table a "
                   "list G1,G2,... gives one row each");
    app.add_option("--every", P.every, "online: score every k generated tokens");
    app.add_flag("--no-online", no_online, "initial decision only");
    app.add_flag("--paper-mode", P.paper_mode, "the authors' procedure: generate fully, cut post hoc, re-prefill (with --table: an extra row)");
    app.add_option("--fast-cap", P.fast_cap, "generated tokens cap in fast mode");
    app.add_option("--slow-cap", P.slow_cap, "generated tokens cap in slow mode");
    app.add_flag("--no-confidence", no_conf, "skip the KV-CoE confidence (taps only the classifier's layers)");
    app.add_flag("--trace", P.trace, "keep every online score (in -o records)");
    app.add_flag("--table", table, "the paper's Table 3 on the set: always-fast, always-slow, initial only, initial + online");
    app.add_flag("--study", study,
                 "with --table: the router study — force the answer at every line end of each slow think, then the "
                 "oracle, a random router and the trial-answer exit beside the measured rows, with 95% bootstrap CIs");
    app.add_option("--sweep-theta", sweep_theta, "with --study: trial-answer exit thresholds (mean max-prob)");
    app.add_option("--sweep-tau", sweep_tau, "with --table: tau values, e.g. 20,35,50,65,80");
    app.add_option("--sweep-delta", sweep_delta, "with --table: delta values, e.g. 10,20,30");
    app.add_option("--plot", plot, "with a sweep: tokens-vs-accuracy SVG");
    app.add_option("-o,--output", out, "JSONL records, one per problem");
    int n_parallel = 1;
    cli::add_parallel_flag(app, n_parallel);
    std::string shard_spec;
    cli::add_shard_flag(app, shard_spec);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    const cli::Shard shard = cli::shard_from(app, shard_spec);
    P.online = !no_online;
    P.confidence = !no_conf;
    P.verbose_prompt = pa.verbose_prompt;
    if (policy == "classifier") P.policy = ThinkPolicyKind::Classifier;
    else if (policy == "fast") P.policy = ThinkPolicyKind::AlwaysFast;
    else if (policy == "slow") P.policy = ThinkPolicyKind::AlwaysSlow;
    else throw Error("--policy: classifier, fast or slow");
    const bool single = !prompt.empty() || !file.empty();
    if (single == ps.given()) throw Error("give one question (-p/-f) or a set (--arith N / --data F)");
    if (shard.on() && (single || out.empty())) throw Error("--shard needs a set (--arith N / --data F) and -o");
    if (!out.empty()) check_writable(out);  // before loading anything
    if (!plot.empty()) check_writable(plot);
    if ((table || !sweep_tau.empty() || !sweep_delta.empty()) && clf_path.empty()) throw Error("--table needs --classifier");
    if (study && !table) throw Error("--study needs --table");
    if (!clf2_path.empty() && !study) throw Error("--compare-classifier needs --study");
    const std::vector<double> thetas = cli::parse_numbers(sweep_theta, "--sweep-theta");
    for (double th : thetas)
        if (!(th >= 0 && th <= 1)) throw Error("--sweep-theta: thresholds are mean max-probabilities in [0, 1]");
    const std::vector<double> give_ups = give_up.empty() ? std::vector<double>{} : cli::parse_numbers(give_up, "--give-up");
    if (!table && give_ups.size() > 1) throw Error("--give-up: one value (a list only with --table)");
    if (!table && give_ups.size() == 1) P.give_up = give_ups[0];

    auto model = cli::load_model(a);
    KvClassifier clf;
    if (!clf_path.empty()) {
        clf = KvClassifier::load(clf_path);
        clf.check_model(model->facts());
        const std::string w = clf.cache_mismatch(a.session.cache_type_k, a.session.cache_type_v, a.session.flash_attn);
        if (!w.empty()) std::fprintf(stderr, "kvlens: warning: %s\n", w.c_str());
    }
    PromptFormat fmt = cli::make_thinking_format(*model, pa);
    const KvClassifier * cp = clf.empty() ? nullptr : &clf;
    KvClassifier clf2;
    if (!clf2_path.empty()) {
        clf2 = KvClassifier::load(clf2_path);
        clf2.check_model(model->facts());
    }
    const KvClassifier * cp2 = clf2.empty() ? nullptr : &clf2;
    TapSpec tap = ThinkRunner::tap_spec(model->facts(), cp, P);
    if (cp2) tap = tap_union(tap, ThinkRunner::tap_spec(model->facts(), cp2, P));

    if (single) {
        std::string q = cli::read_prompt(prompt, file);
        Session s(model, a.session);
        s.set_sampling(a.sampling);
        ThinkRunner tr(s, cp, fmt, P);
        ThinkResult r = tr.run(q);
        print_one(r, fmt, P);
        if (!out.empty()) {
            json j = result_json(r, false);
            j.erase("correct");
            write_text_atomic(out, j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n");
        }
        return 0;
    }

    int seq_ctx = 0;
    const EngineParams ep = cli::engine_params(a, model->facts(), n_parallel, &seq_ctx);
    std::vector<ThinkItem> items = cli::load_problem_set(ps, !train_split);
    shard.check_items(items.size());
    const size_t n_all = items.size();
    std::string data_hash;
    std::vector<size_t> global;  // each item's index in the whole set (a shard keeps only its own items)
    {
        std::vector<std::string> parts;
        std::vector<ThinkItem> mine;
        for (size_t i = 0; i < items.size(); ++i) {
            const ThinkItem & it = items[i];
            parts.push_back(it.row.id + "\x1e" + it.row.prompt + "\x1e" + it.row.reference + "\x1e" + std::to_string(it.level));
            if (!shard.owns(i)) continue;
            mine.push_back(it);
            global.push_back(i);
        }
        if (shard.on()) data_hash = cli::items_hash(parts);
        items = std::move(mine);
    }
    // -o is resumable: every record carries the run's settings; a rerun into the same file reads the problems
    // already there back (into the tables) and runs only the others; other settings are refused, not mixed.
    // -np does not shape a record (each sequence gets the same context), so a run may resume with another -np.
    cli::RunSignature sig;
    {
        auto num = [](double v) {
            char b[40];
            std::snprintf(b, sizeof b, "%.9g", v);
            return std::string(b);
        };
        sig.add("model", cli::weights_fingerprint(a.model.path))
            .add("classifier", clf_path.empty() ? "none" : cli::weights_fingerprint(clf_path))
            .add("compare", clf2_path.empty() ? "none" : cli::weights_fingerprint(clf2_path))
            .add("policy", policy)
            .add("table", table ? (study ? "study" : "yes") : "no")
            .add("tau", num(P.tau))
            .add("delta", num(P.delta))
            .add("give_up", give_up)
            .add("every", std::to_string(P.every))
            .add("online", P.online ? "on" : "off")
            .add("paper_mode", P.paper_mode ? "on" : "off")
            .add("fast_cap", std::to_string(P.fast_cap))
            .add("slow_cap", std::to_string(P.slow_cap))
            .add("confidence", P.confidence ? "on" : "off")
            .add("split", train_split ? "train" : "held-out")
            .add("prompt", fmt.name + ":" + cli::text_hash(fmt.fast_prefix + "|" + fmt.slow_prefix + "|" + fmt.think_close))
            .add("sampling", num(a.sampling.temp) + "," + std::to_string(a.sampling.top_k) + "," + num(a.sampling.top_p) +
                                 "," + std::to_string(a.sampling.seed))
            .add("ctx", std::to_string(seq_ctx))
            .add("ctk", a.session.cache_type_k)
            .add("ctv", a.session.cache_type_v)
            .add("fa", a.session.flash_attn);
        shard.sign(sig, n_all, data_hash);
    }
    std::map<std::string, json> done;
    std::ofstream o;
    if (!out.empty()) {
        done = cli::resume_records(out, sig);
        o.open(out, std::ios::app | std::ios::binary);
        if (!o) throw Error("cannot write " + out);
        if (!done.empty()) std::fprintf(stderr, "think: %zu problems already in %s (read back, not rerun)\n", done.size(), out.c_str());
    }
    auto write_record = [&](json & j, int i) {
        j["run"] = sig.str();
        shard.tag(j, global[i]);
        o << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        o.flush();
        if (!o) throw Error("write failed: " + out + " (disk full?)");
    };

    // ---- the runs: one program per problem, -np of them decoded together; records written in problem order
    std::vector<double> taus = sweep_tau.empty() ? std::vector<double>{P.tau} : cli::parse_numbers(sweep_tau, "--sweep-tau");
    std::vector<double> deltas = sweep_delta.empty() ? std::vector<double>{P.delta} : cli::parse_numbers(sweep_delta, "--sweep-delta");
    const bool sweep = !sweep_tau.empty() || !sweep_delta.empty();
    std::vector<ThinkPolicy> rule;  // the sweep's initial rule per tau
    for (double t : taus) rule.push_back(tau_rule(P, t));
    std::vector<ItemRuns> runs(items.size());
    auto program = [&](int i, Sequence & seq) {
        const ThinkItem & it = items[i];
        ItemRuns & x = runs[i];
        auto d = done.find(it.row.id);
        x.resumed = d != done.end();
        if (x.resumed && !table) {
            x.single = run_from_json(d->second);
            return;
        }
        if (x.resumed) {
            x.fast = run_from_json(d->second.at("fast"));
            x.slow = run_from_json(d->second.at("slow"));
            x.online = run_from_json(d->second.at("online"));
            if (cp2) x.online2 = run_from_json(d->second.at("online2"));
            if (P.paper_mode) x.paper = run_from_json(d->second.at("paper"));
            if (study) {
                for (const json & c : d->second.at("cuts")) {
                    ForcedAnswer f;
                    f.at = c.at(0).get<int>();
                    f.correct = c.at(1).get<bool>();
                    f.answer_tokens = c.at(2).get<int>();
                    f.maxprob = c.at(3).get<double>();
                    f.hit_cap = c.at(4).get<bool>();
                    x.cuts.push_back(f);
                }
            }
            if (!sweep) return;  // nothing to rerun
        }
        ThinkRunner tr(seq, cp, fmt, P);
        if (!table) {
            x.single = run_with(tr, it, P);
            return;
        }
        if (!x.resumed) {
            // greedy decoding: Table 3's initial-only row reuses the fixed-mode runs
            x.fast = run_with(tr, it, with_policy(P, ThinkPolicyKind::AlwaysFast, false, false));
            x.slow = run_with(tr, it, with_policy(P, ThinkPolicyKind::AlwaysSlow, false, false));
            if (study) {  // the slow think is still in the cache: force the answer at each of its line ends
                const ThinkResult & r = x.slow.r;
                const auto cuts = think_line_cuts(seq.model(), r.tokens, fmt.think_close);
                x.cuts = forced_answers(seq, fmt, r.prompt_tokens + r.control_tokens, fmt.slow_prefix, r.tokens, cuts,
                                        [&](const std::string & o) { return check_item(it, o); }, P.fast_cap);
            }
            x.online = run_with(tr, it, with_policy(P, ThinkPolicyKind::Classifier, true, false));
            if (cp2) {
                ThinkRunner tr2(seq, cp2, fmt, P);
                x.online2 = run_with(tr2, it, with_policy(P, ThinkPolicyKind::Classifier, true, false));
            }
            if (P.paper_mode) x.paper = run_with(tr, it, with_policy(P, ThinkPolicyKind::Classifier, true, true));
        }
        if (!sweep) return;
        // the sweep: one online run per (first mode, delta); the run above stands for its own pair
        const int own = x.online.r.first_mode == ThinkMode::Fast ? 0 : 1;
        if (std::find(deltas.begin(), deltas.end(), P.delta) != deltas.end()) x.sweep[{own, P.delta}] = x.online;
        const double score = x.online.r.initial_score;
        for (size_t ti = 0; ti < taus.size(); ++ti) {
            const bool fast_first = rule[ti].initial(score) == ThinkMode::Fast;
            for (double dl : deltas) {
                const std::pair<int, double> k{fast_first ? 0 : 1, dl};
                if (x.sweep.count(k)) continue;
                ThinkParams q = with_policy(P, ThinkPolicyKind::Classifier, true, false);
                q.delta = dl;
                q.first_mode = fast_first ? ThinkMode::Fast : ThinkMode::Slow;
                x.sweep[k] = run_with(tr, it, q);
            }
        }
    };
    int n_done = 0, n_ok = 0, n_fast_ok = 0, n_slow_ok = 0;
    auto t_start = std::chrono::steady_clock::now();
    auto finished = [&](int i) {  // in problem order
        ItemRuns & x = runs[i];
        const ThinkItem & it = items[i];
        ++n_done;
        if (!table) {
            n_ok += x.single.ok;
            if (o.is_open() && !x.resumed) {
                json j = {{"id", it.row.id}, {"reference", it.row.reference}};
                j.update(result_json(x.single.r, x.single.ok));
                if (P.trace) j["scores"] = x.single.r.scores;
                write_record(j, i);
            }
        } else {
            n_ok += x.online.ok;
            n_fast_ok += x.fast.ok;
            n_slow_ok += x.slow.ok;
            if (o.is_open() && !x.resumed) {
                json j = {{"id", it.row.id}, {"level", it.level}, {"reference", it.row.reference},
                          {"score", x.online.r.initial_score}, {"fast", result_json(x.fast.r, x.fast.ok)},
                          {"slow", result_json(x.slow.r, x.slow.ok)}, {"online", result_json(x.online.r, x.online.ok)}};
                if (x.paper) j["paper"] = result_json(x.paper->r, x.paper->ok);
                if (x.online2) j["online2"] = result_json(x.online2->r, x.online2->ok);
                if (study) {  // [at, correct, answer tokens, mean max-prob, hit cap] per line end
                    json cs = json::array();
                    for (const ForcedAnswer & f : x.cuts) cs.push_back({f.at, f.correct, f.answer_tokens, f.maxprob, f.hit_cap});
                    j["cuts"] = cs;
                }
                write_record(j, i);
            }
        }
        if (n_done % 20 == 0 || n_done == (int) items.size()) {
            const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
            const double eta = sec / n_done * (items.size() - n_done);
            if (table)
                std::fprintf(stderr, "[%d/%zu] fast %.1f%% slow %.1f%% online %.1f%%  %.1f problems/s  ETA %.0f s\n", n_done,
                             items.size(), 100.0 * n_fast_ok / n_done, 100.0 * n_slow_ok / n_done, 100.0 * n_ok / n_done,
                             n_done / std::max(sec, 1e-9), eta);
            else
                std::fprintf(stderr, "[%d/%zu] accuracy %.1f%%  %.1f problems/s  ETA %.0f s\n", n_done, items.size(),
                             100.0 * n_ok / n_done, n_done / std::max(sec, 1e-9), eta);
        }
    };
    run_sequences(model, ep, a.sampling, tap, (int) items.size(), program, finished);

    if (!table) {
        PolicyStats st;
        st.name = policy + (P.policy == ThinkPolicyKind::Classifier ? (P.online ? (P.paper_mode ? " (paper mode)" : " (online)") : " (initial only)") : "");
        std::vector<double> conf;
        std::vector<int> lab;
        for (const ItemRuns & x : runs) {
            st.add(x.single.r, x.single.ok);
            if (x.single.r.confidence) { conf.push_back(*x.single.r.confidence); lab.push_back(x.single.ok); }
        }
        std::printf("%s", format_think_table({st}, "").c_str());
        if (auto au = auroc(conf, lab)) std::printf("\nconfidence AUROC (KV-CoE C): %.3f\n", *au);
        return 0;
    }

    // ---- Table 3 from the runs (kvlens/think_table.h)
    ThinkTableConfig tc;
    tc.params = P;
    tc.give_ups = give_ups;
    tc.sweep = sweep;
    tc.taus = taus;
    tc.deltas = deltas;
    tc.study = study;
    tc.thetas = thetas;
    tc.classifier = clf.meta();
    if (cp2) tc.compare = clf2.meta();
    std::vector<ThinkTableItem> tab;
    for (size_t i = 0; i < items.size(); ++i) {
        tab.push_back(std::move(static_cast<ThinkTableItem &>(runs[i])));
        tab.back().level = items[i].level;
    }
    const ThinkTable t = think_table(tab, tc);
    std::printf("%s", format_think_report(t, tc).c_str());
    if (!plot.empty() && !t.plot.empty()) {
        PlotOptions po;
        po.title = "fast/slow thinking: tokens vs accuracy (tau sweep per line)";
        po.x_label = "mean generated tokens per problem";
        po.y_label = "accuracy %";
        po.legend = LegendPos::BottomRight;
        write_svg(plot, line_plot_svg(t.plot, po));
        std::printf("\nplot: %s\n", plot.c_str());
    }
    return 0;
}

KVLENS_COMMAND("think", "adaptive fast/slow thinking: classifier decision + online switch keeping the KV cache", cmd_think);
