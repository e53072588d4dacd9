// kvlens-train train: the training loop on ggml-opt (AdamW, warm-up + cosine schedule, validation with
// held-out teacher-forced answer accuracy, checkpoints that resume, fixed seed).
#include "train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <vector>

#include "data.h"
#include "ggml-cpu.h"
#include "ggml-opt.h"
#include "host_adamw.h"
#include "kvlens/arith_overthink.h"
#include "reasoner.h"
#include "vocab.h"

namespace fs = std::filesystem;

namespace kvlens::train {

namespace {

struct Schedule {
    const TrainArgs * a;
    int64_t step = 0;  // optimizer steps done
    LrState lr;
};

ggml_opt_optimizer_params opt_pars(void * ud) {
    const Schedule & s = *static_cast<Schedule *>(ud);
    ggml_opt_optimizer_params p = ggml_opt_get_default_optimizer_params(nullptr);
    const double lr = scheduled_lr(*s.a, s.lr, s.step);
    p.adamw.alpha = float(lr);
    p.adamw.beta1 = 0.9f;
    p.adamw.beta2 = 0.99f;
    p.adamw.eps = 1e-8f;
    p.adamw.wd = float(s.a->wd);  // ggml applies it as w *= 1 - lr*wd
    return p;
}

// ggml's cross-entropy gives a row with all-zero labels the gradient softmax(logits): a push towards uniform
// predictions at every prompt/padding position. The logits of rows outside the loss are therefore multiplied
// by 0 (row_keep) before the loss: their labels are all zero, so they add no loss and now no gradient.
ggml_tensor * g_row_keep = nullptr;

// The spike guard's weight snapshots: host copies of every weight, taken every 100 steps (the last three kept).
struct Snapshot {
    int64_t step = 0;
    std::vector<std::vector<char>> data;
};
Snapshot take_snapshot(const Weights & w, int64_t step) {
    Snapshot s{step, {}};
    for (ggml_tensor * t : w.all) {
        s.data.emplace_back(ggml_nbytes(t));
        ggml_backend_tensor_get(t, s.data.back().data(), 0, ggml_nbytes(t));
    }
    return s;
}
void restore_snapshot(const Weights & w, const Snapshot & s) {
    for (size_t i = 0; i < w.all.size(); ++i) ggml_backend_tensor_set(w.all[i], s.data[i].data(), 0, s.data[i].size());
}

// Tokens the classic texts (the committed model's training data) contain.
std::vector<bool> classic_tokens(const Tokenizer & tok, int n_vocab) {
    std::vector<bool> seen(n_vocab, false);
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        for (uint64_t s = 0; s < 20; ++s) {
            const ArithProblem p = arith_generate(l, s);
            for (Mode m : {Mode::Fast, Mode::Slow, Mode::Cut, Mode::FastThenSlow}) {
                for (int32_t t : make_example(tok, p, m, 1).tokens) seen[t] = true;
            }
        }
    }
    return seen;
}

// A fine-tune from the committed model may meet tokens that model never saw (the first design's "Wait, check"): their
// embeddings are still random, their hidden states unlike any it was trained on, and the gradients through them
// grow ~1000x per layer until they overflow (docs/MODEL.md). Each such token that the overthinking texts use
// starts instead from the embedding of a seen punctuation token plus a little noise.
void seed_new_token_embeddings(Weights & w, const std::string & model, uint64_t seed) {
    Tokenizer tok(model);
    const int V = int(w.tok_embd->ne[1]), E = int(w.tok_embd->ne[0]);
    const std::vector<bool> seen = classic_tokens(tok, V);
    std::vector<bool> used(V, false);
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        const ArithProblem p = arith_generate(l, 1);
        for (int32_t t : tok.tokenize(arith_chat_prompt(p) + arith_overthink_fast_then_slow_text(p))) used[t] = true;
    }
    std::vector<float> emb(size_t(V) * E);
    ggml_backend_tensor_get(w.tok_embd, emb.data(), 0, ggml_nbytes(w.tok_embd));
    const int32_t sources[] = {tok.tokenize("+")[0], tok.tokenize("|")[0], tok.tokenize("=")[0],
                               tok.tokenize(";")[0], tok.tokenize(".")[0]};
    std::mt19937_64 rng(seed ^ 0x5eedull);
    std::normal_distribution<float> noise(0.0f, 0.005f);
    std::string names;
    int n = 0;
    for (int t = 0; t < V; ++t) {
        if (!used[t] || seen[t]) continue;
        const int32_t src = sources[n++ % 5];
        for (int e = 0; e < E; ++e) emb[size_t(t) * E + e] = emb[size_t(src) * E + e] + noise(rng);
        names += "'" + tok.piece(t) + "' ";
    }
    ggml_backend_tensor_set(w.tok_embd, emb.data(), 0, ggml_nbytes(w.tok_embd));
    std::fprintf(stderr, "new tokens seeded from seen punctuation: %s\n", names.c_str());
}

double per_target_loss(double mean_loss, const PackedBatch & pb, int n_vocab) {
    int n_tgt = 0;
    for (int32_t l : pb.label) n_tgt += l >= 0;
    const double n = double(pb.label.size());
    return mean_loss * n / std::max(1, n_tgt);  // ggml averages over all rows; rows outside the loss add 0
}

void set_batch(ggml_opt_context_t opt, const BatchInputs & in, const PackedBatch & pb, int n_vocab) {
    std::vector<float> keep(pb.label.size());
    for (size_t i = 0; i < keep.size(); ++i) keep[i] = pb.label[i] >= 0 ? 1.0f : 0.0f;
    ggml_backend_tensor_set(g_row_keep, keep.data(), 0, ggml_nbytes(g_row_keep));
    ggml_backend_tensor_set(in.tokens, pb.tokens.data(), 0, ggml_nbytes(in.tokens));
    ggml_backend_tensor_set(in.pos, pb.pos.data(), 0, ggml_nbytes(in.pos));
    ggml_backend_tensor_set(in.mask, pb.mask.data(), 0, ggml_nbytes(in.mask));
    std::vector<float> lab(size_t(n_vocab) * pb.label.size(), 0.0f);
    for (size_t i = 0; i < pb.label.size(); ++i) {
        if (pb.label[i] >= 0) lab[i * n_vocab + pb.label[i]] = 1.0f;
    }
    ggml_tensor * labels = ggml_opt_labels(opt);
    ggml_backend_tensor_set(labels, lab.data(), 0, ggml_nbytes(labels));
}

std::string latest_ckpt(const std::string & dir) {
    std::string best;
    int64_t best_step = -1;
    if (!fs::is_directory(dir)) return best;
    for (const auto & e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.rfind("ckpt-", 0) == 0 && n.size() > 10 && n.substr(n.size() - 5) == ".gguf") {
            const int64_t s = std::stoll(n.substr(5, n.size() - 10));
            if (s > best_step) { best_step = s; best = e.path().string(); }
        }
    }
    return best;
}

}  // namespace

double scheduled_lr(const TrainArgs & a, const LrState & s, int64_t step) {
    const double t = double(step);
    double lr;
    if (t < a.warmup) {
        lr = a.lr * (t + 1) / a.warmup;
    } else {
        // cosine from the end of the warm-up (or from --cosine-from, a chunk's own decay) to --steps
        const double t0 = a.cosine_from > 0 ? double(a.cosine_from) : double(a.warmup);
        const double x = std::clamp((t - t0) / std::max(1.0, double(a.steps) - t0), 0.0, 1.0);
        lr = a.lr * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * x)));
    }
    if (s.rewarm_until > t) lr *= std::min(1.0, (t - s.rewarm_from + 1) / double(a.rewarm));  // after a resume or a restore
    return lr * s.scale;
}

int run_train(const TrainArgs & a) {
    if (a.cosine_from < 0 || (a.cosine_from > 0 && a.cosine_from >= a.steps)) {
        throw std::runtime_error("--cosine-from must be >= 0 and below --steps");
    }
    if (a.rewarm < 1 || a.warmup < 1) throw std::runtime_error("--warmup and --rewarm must be >= 1");
    fs::create_directories(a.ckpt_dir);
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, a.threads);

    HParams hp = a.hp;
    hp.n_vocab = int(reasoner_vocab().tokens.size());
    Weights w;
    std::map<std::string, int64_t> state;
    const std::string resume = latest_ckpt(a.ckpt_dir);
    Schedule sched{&a, 0};
    const Profile profile = parse_profile(a.profile);
    if (!resume.empty()) {
        hp = read_hparams(resume, &state);
        w.create(hp, backend);
        load_weights(w, resume);
        sched.step = state["kvlens.train.step"];
        if (state.count("kvlens.train.lr_scale_ppm")) sched.lr.scale = state["kvlens.train.lr_scale_ppm"] / 1e6;
        std::fprintf(stderr, "resumed from %s at step %lld (optimizer moments restart; lr re-warms over %d steps)\n",
                     resume.c_str(), (long long) sched.step, a.rewarm);
    } else if (!a.init_from.empty()) {  // a fine-tune: start from a trained model
        hp = read_hparams(a.init_from, nullptr);
        if (a.ctx > 0) hp.n_ctx = a.ctx;
        if (a.rope_base > 0) hp.rope_base = a.rope_base;
        const int old_layers = hp.n_layer;
        hp.n_layer += a.grow_layers;
        w.create(hp, backend);
        if (a.grow_layers > 0) {
            w.init_random(a.seed);            // the new blocks' attention and FFN inputs
            w.zero_residual_writes(old_layers);  // ... writing nothing yet: identity blocks
        }
        load_weights_below(w, a.init_from, old_layers);
        std::fprintf(stderr, "fine-tuning %s (context %d, rope base %g%s)\n", a.init_from.c_str(), hp.n_ctx, hp.rope_base,
                     a.grow_layers > 0 ? (", " + std::to_string(a.grow_layers) + " identity blocks on top of its " +
                                          std::to_string(old_layers)).c_str() : "");
    } else {
        w.create(hp, backend);
        w.init_random(a.seed);
    }
    if (profile == Profile::Overthink && resume.empty() && !a.init_from.empty()) seed_new_token_embeddings(w, a.init_from, a.seed);
    if (profile == Profile::Overthink) {
        w.chat_template = qwen3_chat_template();
        std::fprintf(stderr, "profile overthink: chat template from %s\n", qwen3_chat_template_path().c_str());
    }
    if (resume.empty()) save_gguf(w, a.ckpt_dir + "/ckpt-0.gguf", {{"kvlens.train.step", 0}});
    if (a.row_len > hp.n_ctx) {
        throw std::runtime_error("--row " + std::to_string(a.row_len) + " exceeds the context length " +
                                 std::to_string(hp.n_ctx) + " (--ctx)");
    }
    sched.lr.rewarm_from = double(sched.step);
    sched.lr.rewarm_until = resume.empty() ? -1.0 : double(sched.step + a.rewarm);
    if (a.train_layers_from >= hp.n_layer) throw std::runtime_error("--train-layers " + std::to_string(a.train_layers_from) +
                                                                   " leaves no block to train (the model has " +
                                                                   std::to_string(hp.n_layer) + ")");
    w.mark_params(a.train_layers_from);
    std::fprintf(stderr, "model: %d layers, n_embd %d, heads %d/%d x %d, ff %d, vocab %d: %lld params\n", hp.n_layer,
                 hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff, hp.n_vocab, (long long) w.n_params());

    Tokenizer tok(latest_ckpt(a.ckpt_dir));
    const int T = a.row_len, B = a.batch_rows;

    // static inputs
    ggml_init_params ipi = {ggml_tensor_overhead() * 5, nullptr, true};
    ggml_context * ctx_in = ggml_init(ipi);
    BatchInputs in;
    in.tokens = ggml_new_tensor_1d(ctx_in, GGML_TYPE_I32, T * B);
    in.pos = ggml_new_tensor_1d(ctx_in, GGML_TYPE_I32, T * B);
    in.mask = ggml_new_tensor_4d(ctx_in, GGML_TYPE_F32, T, T, 1, B);
    g_row_keep = ggml_new_tensor_2d(ctx_in, GGML_TYPE_F32, 1, T * B);
    ggml_backend_buffer_t buf_in = ggml_backend_alloc_ctx_tensors(ctx_in, backend);

    ggml_init_params ipc = {ggml_tensor_overhead() * 32768 + 4 * ggml_graph_overhead_custom(16384, true), nullptr, true};
    ggml_context * ctx_compute = ggml_init(ipc);
    ggml_tensor * logits = ggml_mul(ctx_compute, forward(ctx_compute, w, in, T, B), g_row_keep);

    ggml_backend_sched_t bsched = ggml_backend_sched_new(&backend, nullptr, 1, 16384, false, false);
    ggml_opt_params op = ggml_opt_default_params(bsched, GGML_OPT_LOSS_TYPE_CROSS_ENTROPY);
    op.ctx_compute = ctx_compute;
    op.inputs = in.tokens;
    op.outputs = logits;
    op.get_opt_pars = opt_pars;
    op.get_opt_pars_ud = &sched;
    op.optimizer = GGML_OPT_OPTIMIZER_TYPE_ADAMW;
    if (a.host_adamw) op.opt_period = kHostAdamwPeriod;  // ggml-opt computes the gradients, HostAdamw steps
    ggml_opt_context_t opt = ggml_opt_init(op);

    // validation set: fixed problems (seed bit 62), fast and slow per level
    std::vector<Example> val;
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        for (int i = 0; i < a.val_per_level; ++i) {
            ArithProblem p = arith_generate(l, (1ull << 62) | uint64_t(l * 100000 + i));
            val.push_back(make_example(tok, p, Mode::Fast, 0, profile));
            val.push_back(make_example(tok, p, Mode::Slow, 0, profile));
            if (profile == Profile::Overthink) {  // closed right after the first solution
                val.push_back(make_example(tok, p, Mode::Cut, arith_first_solution_lines(p), profile));
            }
        }
    }
    const std::vector<int> val_modes = profile == Profile::Overthink
                                           ? std::vector<int>{int(Mode::Fast), int(Mode::Slow), int(Mode::Cut)}
                                           : std::vector<int>{int(Mode::Fast), int(Mode::Slow)};
    const std::vector<int32_t> close_ids = tok.tokenize("</think>");
    const int32_t think_close = close_ids.size() == 1 ? close_ids[0] : -1;  // classic: no such token
    auto validate = [&]() {
        std::map<std::pair<int, int>, std::pair<int, int>> em;  // (mode, level) -> (exact, n): every target token
        std::map<std::pair<int, int>, std::pair<int, int>> em_answer;  // the same from the last </think> on
        double loss_sum = 0;
        int nb = 0;
        PackedBatch pb;
        std::vector<bool> used;
        for (size_t from = 0; from < val.size();) {
            from += profile == Profile::Overthink ? pack_first_fit(val, used, T, B, pb) : pack(val, from, T, B, pb);
            set_batch(opt, in, pb, hp.n_vocab);
            ggml_opt_result_t res = ggml_opt_result_init();
            ggml_opt_alloc(opt, false);
            ggml_opt_eval(opt, res);
            double loss;
            ggml_opt_result_loss(res, &loss, nullptr);
            loss_sum += per_target_loss(loss, pb, hp.n_vocab);
            ++nb;
            std::vector<int32_t> pred(size_t(T) * B);
            ggml_opt_result_pred(res, pred.data());
            ggml_opt_result_free(res);
            for (const auto & s : pb.spans) {
                bool ok = true, ans_ok = true;
                int close_at = -1;  // the last "</think>" of the example: its answer follows
                for (int j = 0; j < s.len; ++j) {
                    const size_t k = size_t(s.row) * T + s.start + j;
                    if (pb.tokens[k] == think_close) close_at = j;
                    if (pb.label[k] >= 0 && pred[k] != pb.label[k]) ok = false;
                }
                for (int j = std::max(close_at, 0); j < s.len; ++j) {
                    const size_t k = size_t(s.row) * T + s.start + j;
                    if (pb.label[k] >= 0 && pred[k] != pb.label[k]) ans_ok = false;
                }
                auto & c = em[{int(s.mode), s.level}];
                c.first += ok;
                c.second += 1;
                if (close_at >= 0) {
                    auto & ca = em_answer[{int(s.mode), s.level}];
                    ca.first += ans_ok;
                    ca.second += 1;
                }
            }
        }
        std::string line = "  val loss " + std::to_string(loss_sum / nb).substr(0, 6) + " | exact, teacher-forced, every target token:";
        for (int m : val_modes) {
            line += std::string(" ") + mode_name(Mode(m));
            for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
                auto c = em[{m, l}];
                char b[16];
                std::snprintf(b, sizeof b, " %3.0f%%", 100.0 * c.first / std::max(1, c.second));
                line += b;
            }
        }
        // Every target token above (a slow think's re-check rounds included); here only what follows the last
        // </think>, teacher-forced: is the answer right once the think is closed?
        if (think_close >= 0) {
            line += " | from </think> on:";
            for (int m : val_modes) {
                if (Mode(m) == Mode::Fast) continue;  // the same as above: a fast answer is all after </think>
                line += std::string(" ") + mode_name(Mode(m));
                for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
                    auto c = em_answer[{m, l}];
                    char b[16];
                    std::snprintf(b, sizeof b, " %3.0f%%", 100.0 * c.first / std::max(1, c.second));
                    line += b;
                }
            }
        }
        std::fprintf(stderr, "%s\n", line.c_str());
    };

    Mixture mix = profile == Profile::Overthink ? overthink_mixture() : Mixture();
    if (!a.level_weights.empty()) {
        size_t at = 0;
        for (int l = 0; l < kArithMaxLevel; ++l) {
            const size_t comma = a.level_weights.find(',', at);
            mix.level_weight[l] = std::stod(a.level_weights.substr(at, comma - at));
            if (comma == std::string::npos) break;
            at = comma + 1;
        }
    }
    if (!a.mix.empty()) {
        double v[3];
        size_t at = 0;
        for (int i = 0; i < 3; ++i) {
            const size_t comma = a.mix.find(',', at);
            if (comma == std::string::npos && i < 2) throw std::runtime_error("--mix: fast,slow,cut");
            v[i] = std::stod(a.mix.substr(at, comma - at));
            at = comma + 1;
        }
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[0] + v[1] + v[2] > 1 + 1e-9)
            throw std::runtime_error("--mix: three shares >= 0 summing to at most 1");
        mix.p_fast = v[0];
        mix.p_slow = v[1];
        mix.p_cut = v[2];
    }
    if (a.rehearse >= 0) {
        if (a.rehearse > 1 || profile != Profile::Overthink)
            throw std::runtime_error("--rehearse: a share in [0, 1], with --profile overthink");
        mix.p_rehearse = a.rehearse;
    }
    std::vector<Example> pool;
    size_t pool_pos = 0;
    auto t0 = std::chrono::steady_clock::now();
    auto last_ckpt = t0;
    const int64_t step0 = sched.step;
    double loss_acc = 0;
    int loss_n = 0;
    int64_t tokens_done = 0;
    PackedBatch pb;
    bool finished = false;
    std::deque<double> hist;         // the last 220 per-step losses since the start or the last restore (spike guard)
    std::vector<Snapshot> snaps;     // newest last
    int restores = 0;
    HostAdamw hadam;
    hadam.wd = a.wd;
    if (a.anchor > 0) {  // L2-SP: the starting point is ckpt-0 (written when the run began; the same after a resume)
        Weights w0;
        w0.create(hp, backend);
        const std::string start = a.ckpt_dir + "/ckpt-0.gguf";
        load_weights(w0, start);
        hadam.anchor = a.anchor;
        w0.mark_params(a.train_layers_from);  // the same weights, in the same order, as w.trained
        for (ggml_tensor * t : w0.trained) {
            hadam.w0.emplace_back(ggml_nelements(t));
            ggml_backend_tensor_get(t, hadam.w0.back().data(), 0, ggml_nbytes(t));
        }
        w0.free();
        std::fprintf(stderr, "anchor: L2-SP towards %s, strength %g\n", start.c_str(), a.anchor);
    }
    double grad_norm_acc = 0;
    auto ckpt_state = [&]() {
        return std::map<std::string, int64_t>{{"kvlens.train.step", sched.step},
                                              {"kvlens.train.lr_scale_ppm", int64_t(std::llround(sched.lr.scale * 1e6))}};
    };
    if (sched.lr.scale != 1) {
        std::fprintf(stderr, "lr scale %.3f (lowered by the spike guard before the resume)\n", sched.lr.scale);
    }
    while (true) {
        if (sched.step >= a.steps) { finished = true; break; }
        const double elapsed_min = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60.0;
        if (a.minutes > 0 && elapsed_min >= a.minutes) break;
        if (a.stop_at > 0 && sched.step >= a.stop_at) break;
        // data for this step: deterministic in (seed, step) so a resumed run sees the same stream
        std::mt19937_64 rng(a.seed * 0x9E3779B97F4A7C15ull + uint64_t(sched.step) * 7919 + 1);
        pool.clear();
        pool_pos = 0;
        const double progress = double(sched.step) / double(a.steps);
        while (int(pool.size()) < B * 8) pool.push_back(mix.draw(tok, rng, progress));
        if (profile == Profile::Overthink) {
            std::vector<bool> used;
            pack_first_fit(pool, used, T, B, pb);
        } else {
            pool_pos += pack(pool, pool_pos, T, B, pb);
        }
        set_batch(opt, in, pb, hp.n_vocab);
        ggml_opt_result_t res = ggml_opt_result_init();
        ggml_opt_alloc(opt, true);
        ggml_opt_eval(opt, res);
        if (a.host_adamw) {
            const double gn = hadam.step(opt, w, scheduled_lr(a, sched.lr, sched.step));
            if (gn < 0) std::fprintf(stderr, "host adamw: step %lld skipped (gradient non-finite or > %.0fx the median norm; %lld skipped)\n",
                                     (long long) sched.step + 1, hadam.skip_factor, (long long) hadam.skipped);
            else grad_norm_acc += gn;
        }
        double loss;
        ggml_opt_result_loss(res, &loss, nullptr);
        ggml_opt_result_free(res);
        const double step_loss = per_target_loss(loss, pb, hp.n_vocab);
        loss_acc += step_loss;
        ++loss_n;
        for (auto & s : pb.spans) tokens_done += s.len;
        ++sched.step;
        if (a.spike_factor > 0) {
            hist.push_back(step_loss);
            if (hist.size() > 220) hist.pop_front();
            const size_t n = hist.size();
            if (n >= 220) {
                double recent = 0, before = 0;
                for (size_t i = n - 20; i < n; ++i) recent += hist[i] / 20;
                for (size_t i = n - 220; i < n - 20; ++i) before += hist[i] / 200;
                if (recent > a.spike_factor * before && snaps.size() >= 2) {
                    const Snapshot & back = snaps[snaps.size() - 2];  // 100-199 steps back
                    restore_snapshot(w, back);
                    sched.lr.scale *= 0.7;
                    sched.lr.rewarm_from = double(sched.step);
                    sched.lr.rewarm_until = double(sched.step + a.rewarm);
                    if (++restores > 8) throw std::runtime_error("spike guard: more than 8 restores; lower --lr");
                    std::fprintf(stderr, "spike guard: loss %.3f over the last 20 steps vs %.3f before: weights of step %lld "
                                         "restored, lr scale now %.3f (restore %d)\n",
                                 recent, before, (long long) back.step, sched.lr.scale, restores);
                    Snapshot keep = back;
                    snaps.assign(1, keep);
                    hist.clear();
                }
            }
            if (sched.step % 100 == 0) {
                snaps.push_back(take_snapshot(w, sched.step));
                if (snaps.size() > 3) snaps.erase(snaps.begin());
            }
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (sched.step % a.log_every == 0) {
            const double sps = double(sched.step - step0) / secs;
            std::fprintf(stderr, "step %6lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %.2f s/step  ETA %.1f min",
                         (long long) sched.step, (long long) a.steps, loss_acc / loss_n, opt_pars(&sched).adamw.alpha,
                         tokens_done / secs, 1.0 / sps, double(a.steps - sched.step) / sps / 60.0);
            if (a.host_adamw) std::fprintf(stderr, "  grad norm %.3g  skipped %lld", grad_norm_acc / loss_n, (long long) hadam.skipped);
            std::fprintf(stderr, "\n");
            grad_norm_acc = 0;
            loss_acc = 0;
            loss_n = 0;
        }
        if (sched.step % a.val_every == 0) validate();
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - last_ckpt).count() > a.ckpt_minutes * 60) {
            save_gguf(w, a.ckpt_dir + "/ckpt-" + std::to_string(sched.step) + ".gguf", ckpt_state());
            last_ckpt = std::chrono::steady_clock::now();
        }
    }
    validate();
    save_gguf(w, a.ckpt_dir + "/ckpt-" + std::to_string(sched.step) + ".gguf", ckpt_state());
    if (finished || a.export_partial) {
        save_gguf(w, a.out, {});
        std::fprintf(stderr, "wrote %s (step %lld)\n", a.out.c_str(), (long long) sched.step);
    } else {
        std::fprintf(stderr, "stopped at step %lld (time budget); run the same command again to resume\n",
                     (long long) sched.step);
    }
    ggml_opt_free(opt);
    ggml_backend_sched_free(bsched);
    ggml_free(ctx_compute);
    ggml_backend_buffer_free(buf_in);
    ggml_free(ctx_in);
    w.free();
    ggml_backend_free(backend);
    return finished ? 0 : 3;
}

}  // namespace kvlens::train
