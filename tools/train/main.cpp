// kvlens-train — the embedded reasoner's recipe and evaluation.
//   kvlens-train train [--out models/kvlens-reasoner.gguf] [--ckpt models/ckpt] [--steps N] [--minutes M] ...
//   kvlens-train eval  [--model models/kvlens-reasoner.gguf] [--per-level N] [--seed S] [--cutoff C] [--jsonl F]
//                      [-np N]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <cstring>
#include <map>
#include <random>
#include <stdexcept>
#include <string>

#include "check.h"
#include "data.h"
#include "eval_core.h"
#include "gen.h"
#include "kvlens/arith.h"
#include "kvlens/arith_overthink.h"
#include "kvlens/error.h"
#include "train.h"

using namespace kvlens::train;

static void usage() {
    std::fprintf(stderr,
                 "usage: kvlens-train train [--out F] [--ckpt DIR] [--steps N] [--minutes M] [--stop-at STEP] [--batch B] [--row T]\n"
                 "                          [--lr X] [--warmup N] [--rewarm N] [--cosine-from STEP] [--seed S] [--threads N] [--layers L] [--embd E]\n"
                 "                          [--spike-guard FACTOR (e.g. 1.8: roll back and lower the LR on a loss spike)]\n"
                 "                          [--ff F] [--heads H] [--kv-heads K] [--head-dim D] [--val-every N]\n"
                 "                          [--ckpt-minutes M] [--export-partial]\n"
                 "                          [--profile classic|overthink] [--init-from MODEL.gguf] [--ctx N]\n"
                 "                          [--mix FAST,SLOW,CUT] [--rehearse SHARE (overthink: classic texts mixed in)]\n"
                 "                          [--host-adamw] [--anchor L2SP] [--grow-layers K] [--train-layers FROM]\n"
                 "       kvlens-train eval  [--model F] [--per-level N] [--seed S] [--cutoff C] [--threads N]\n"
                 "                          [--jsonl F] [--profile auto|classic|overthink] [--max-new N]\n"
                 "                          [-np|--parallel N (problems decoded together; default 1)]\n");
}

int main(int argc, char ** argv) {
    if (argc < 2) { usage(); return 1; }
    const std::string cmd = argv[1];
    // ggml's OpenMP threads must not spin on a CPU shared with other work: re-exec with a passive wait policy
    if (!std::getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    try {
        if (cmd == "changed") {
            if (argc != 4) throw kvlens::Error("usage: kvlens-train changed A.gguf B.gguf");
        }
        TrainArgs ta;
        EvalArgs ea;
        for (int i = cmd == "changed" ? argc : 2; i < argc; ++i) {
            const std::string k = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) throw kvlens::Error("missing value for " + k);
                return argv[++i];
            };
            if (k == "--out") ta.out = next();
            else if (k == "--ckpt") ta.ckpt_dir = next();
            else if (k == "--steps") ta.steps = std::stoll(next());
            else if (k == "--minutes") ta.minutes = std::stod(next());
            else if (k == "--stop-at") ta.stop_at = std::stoll(next());
            else if (k == "--batch") ta.batch_rows = std::stoi(next());
            else if (k == "--row") ta.row_len = std::stoi(next());
            else if (k == "--lr") ta.lr = std::stod(next());
            else if (k == "--warmup") ta.warmup = std::stoi(next());
            else if (k == "--rewarm") ta.rewarm = std::stoi(next());
            else if (k == "--cosine-from") ta.cosine_from = std::stoll(next());
            else if (k == "--seed") { const std::string v = next(); ta.seed = std::stoull(v); ea.seed = std::stoull(v); }
            else if (k == "--threads") { const int v = std::stoi(next()); ta.threads = v; ea.threads = v; }
            else if (k == "--layers") ta.hp.n_layer = std::stoi(next());
            else if (k == "--embd") ta.hp.n_embd = std::stoi(next());
            else if (k == "--ff") ta.hp.n_ff = std::stoi(next());
            else if (k == "--heads") ta.hp.n_head = std::stoi(next());
            else if (k == "--kv-heads") ta.hp.n_head_kv = std::stoi(next());
            else if (k == "--head-dim") ta.hp.head_dim = std::stoi(next());
            else if (k == "--val-every") ta.val_every = std::stoi(next());
            else if (k == "--val-per-level") ta.val_per_level = std::stoi(next());
            else if (k == "--log-every") ta.log_every = std::stoi(next());
            else if (k == "--ckpt-minutes") ta.ckpt_minutes = std::stod(next());
            else if (k == "--export-partial") ta.export_partial = true;
            else if (k == "--spike-guard") ta.spike_factor = std::stod(next());
            else if (k == "--level-weights") ta.level_weights = next();
            else if (k == "--mix") ta.mix = next();
            else if (k == "--host-adamw") ta.host_adamw = true;
            else if (k == "--anchor") {
                ta.anchor = std::stod(next());
                if (!(ta.anchor >= 0) || !std::isfinite(ta.anchor)) throw kvlens::Error("--anchor must be a number >= 0");
            }
            else if (k == "--grow-layers") ta.grow_layers = std::stoi(next());
            else if (k == "--train-layers") ta.train_layers_from = std::stoi(next());
            else if (k == "--rehearse") ta.rehearse = std::stod(next());
            else if (k == "--profile") { const std::string v = next(); ta.profile = v; ea.profile = v; }
            else if (k == "--init-from") ta.init_from = next();
            else if (k == "--ctx") ta.ctx = std::stoi(next());
            else if (k == "--rope-base") {
                ta.rope_base = std::stof(next());
                if (!(ta.rope_base > 0) || !std::isfinite(ta.rope_base)) throw kvlens::Error("--rope-base must be a positive number");
            }
            else if (k == "--max-new") ea.max_new = std::stoi(next());
            else if (k == "--model") ea.model = next();
            else if (k == "--per-level") ea.per_level = std::stoi(next());
            else if (k == "--cutoff") ea.short_cutoff = std::stoi(next());
            else if (k == "--jsonl") ea.jsonl = next();
            else if (k == "-np" || k == "--parallel") {
                const std::string v = next();
                size_t used = 0;
                long n = 0;
                try { n = std::stol(v, &used); } catch (const std::exception &) { used = 0; }
                if (used == 0 || used != v.size() || n < 1 || n > 256)
                    throw kvlens::Error(k + " must be a whole number from 1 to 256 (problems decoded together), got '" + v + "'");
                ea.n_parallel = int(n);
            }
            else throw kvlens::Error("unknown option " + k);
        }
        if (cmd == "train") {
            if (ta.profile == "overthink") ta.host_adamw = true;
            if (ta.grow_layers < 0 || ta.grow_layers > 64) throw kvlens::Error("--grow-layers must be 0..64");
            if (ta.grow_layers > 0 && ta.init_from.empty()) throw kvlens::Error("--grow-layers needs --init-from (the model to grow)");
            if (ta.train_layers_from < -1) throw kvlens::Error("--train-layers must be a block index >= 0");
            if (ta.anchor > 0 && !ta.host_adamw) throw kvlens::Error("--anchor needs the host optimizer (--host-adamw or --profile overthink)");
            return run_train(ta);
        }
        if (cmd == "show") {  // kvlens-train show --model M [--profile P] [--seed S]: examples of every mode, and a mix
            quiet_llama_logs();
            const Profile prof = parse_profile(ta.profile);
            Tokenizer tok(ea.model);
            for (int l = kvlens::kArithMinLevel; l <= kvlens::kArithMaxLevel; ++l) {
                const auto p = kvlens::arith_generate(l, ea.seed);
                const int first = int(kvlens::arith_trace_steps(p).size());
                for (Mode m : {Mode::Fast, Mode::Slow, Mode::FastThenSlow})
                    std::printf("%s\n\n", render_example(tok, make_example(tok, p, m, 0, prof)).c_str());
                for (int k : {0, first - 1, first, first + 1})  // first + 1: a line into the re-check rounds
                    if (k >= 0 && (prof == Profile::Overthink || k <= first)) std::printf("cut %d: %s\n\n", k, render_example(tok, make_example(tok, p, Mode::Cut, k, prof)).c_str());
            }
            Mixture mix = prof == Profile::Overthink ? overthink_mixture() : Mixture();
            std::mt19937_64 rng(ea.seed);
            std::map<std::string, std::pair<int, long>> share;
            size_t longest = 0;
            for (int i = 0; i < 2000; ++i) {
                const Example e = mix.draw(tok, rng, 1.0);
                auto & c = share[std::string(mode_name(e.mode)) + " L" + std::to_string(e.level)];
                ++c.first;
                c.second += long(e.tokens.size());
                longest = std::max(longest, e.tokens.size());
            }
            if (prof == Profile::Overthink) {  // the design's token counts and its expected oracle bound
                // generated tokens: fast = work + answer + end; slow = think + close + answer + end; oracle's slow
                // branch = the first solution + close + answer + end (forced text counted)
                const double f_gate[kvlens::kArithMaxLevel] = {0.95, 0.90, 0.60, 0.0, 0.0};
                const double s_acc[kvlens::kArithMaxLevel] = {1.0, 1.0, 0.99, 0.95, 0.70};  // the committed model's slow accuracy
                double sum_slow = 0, sum_oracle = 0;
                std::printf("design (200 problems per level): level | fast | slow | slow/fast | first solution closed | "
                            "oracle at fast accuracy 95/90/60/0/0 %%, slow 100/100/99/95/70 %%\n");
                for (int l = kvlens::kArithMinLevel; l <= kvlens::kArithMaxLevel; ++l) {
                    double f = 0, sl = 0, c = 0;
                    for (int i = 0; i < 200; ++i) {
                        const auto p = kvlens::arith_generate(l, uint64_t(i) | (1ull << 63));
                        const double pre = double(tok.tokenize(kvlens::arith_chat_prompt(p)).size());
                        f += double(tok.tokenize(kvlens::arith_chat_prompt(p) + kvlens::arith_overthink_fast_text(p)).size()) - pre - 4;
                        sl += double(tok.tokenize(kvlens::arith_chat_prompt(p) + kvlens::arith_overthink_slow_text(p)).size()) - pre - 2;
                        c += double(tok.tokenize(kvlens::arith_chat_prompt(p) +
                                                 kvlens::arith_overthink_cut_text(p, kvlens::arith_first_solution_lines(p))).size()) - pre - 2;
                    }
                    f /= 200; sl /= 200; c /= 200;
                    // fast wrong: the first solution closed when slow is right, else the fast answer
                    const double o = f_gate[l - 1] * f + (1 - f_gate[l - 1]) * (s_acc[l - 1] * c + (1 - s_acc[l - 1]) * f);
                    sum_slow += sl;
                    sum_oracle += o;
                    std::printf("  %d | %.1f | %.1f | %.1fx | %.1f | %.1f\n", l, f, sl, sl / f, c, o);
                }
                std::printf("expected oracle bound at the gates' fast accuracies (levels 4-5 fast never right): %.2fx\n",
                            sum_slow / sum_oracle);
            }
            for (const auto & [k, v] : share) std::printf("%-14s %5d examples, mean %.1f tokens\n", k.c_str(), v.first, double(v.second) / v.first);
            std::printf("longest example: %zu tokens\n", longest);
            return 0;
        }
        if (cmd == "eval") { quiet_llama_logs(); return run_eval(ea); }
        if (cmd == "changed") {  // kvlens-train changed A.gguf B.gguf: weights a run did not update
            const auto same = unchanged_tensors(argv[2], argv[3]);
            for (const auto & n : same) std::printf("unchanged: %s\n", n.c_str());
            std::printf("%zu unchanged tensors\n", same.size());
            return same.empty() ? 0 : 2;
        }
        if (cmd == "check") {  // training graph vs llama.cpp logits on a few problems
            quiet_llama_logs();
            std::vector<std::string> texts;
            for (int l = kvlens::kArithMinLevel; l <= kvlens::kArithMaxLevel; ++l) {
                auto p = kvlens::arith_generate(l, 99);
                texts.push_back(kvlens::arith_chat_prompt(p) + (ta.profile == "overthink" ? kvlens::arith_overthink_slow_text(p)
                                                                                      : kvlens::arith_slow_text(p)));
            }
            const double d = compare_with_llama(ea.model, texts, ea.threads);
            std::printf("max relative logit difference (training graph vs llama.cpp): %.3g\n", d);
            const double dp = packed_vs_single(ea.model, ea.threads);
            std::printf("max relative logit difference (packed batch vs one example): %.3g\n", dp);
            if (dp > 1e-4) return 2;
            return d <= 1e-4 ? 0 : 2;
        }
        usage();
        return 1;
    } catch (const std::exception & e) {
        std::fprintf(stderr, "kvlens-train: %s\n", e.what());
        return 1;
    }
}
