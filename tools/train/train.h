// kvlens-train: the tiny reasoner's recipe (train) and its evaluation (eval).
#pragma once
#include <string>

#include "reasoner.h"

namespace kvlens::train {

struct TrainArgs {
    std::string out = "models/kvlens-reasoner.gguf";
    std::string ckpt_dir = "models/ckpt";
    HParams hp;
    int64_t steps = 2600;     // total optimizer steps (sets the LR schedule)
    double minutes = 0;       // stop (and checkpoint) after this long; 0 = no limit; rerun to resume
    int64_t stop_at = 0;      // stop (and checkpoint) at this step; 0 = run to --steps (chunked recipes)
    int row_len = 160;        // T: tokens per packed row (the longest example: level 5, fast>slow)
    int batch_rows = 12;      // B: rows per step
    double lr = 1e-3;
    double wd = 0.1;
    int warmup = 100;
    int rewarm = 50;          // steps of the linear LR ramp after a resume or a spike-guard restore (fresh AdamW moments)
    int64_t cosine_from = 0;  // >0: the cosine decay restarts at this step (a later chunk's own schedule)
    uint64_t seed = 1234;
    int threads = 2;
    int log_every = 20;
    int val_every = 250;
    int val_per_level = 40;
    double ckpt_minutes = 5;
    std::string level_weights;    // "w1,w2,w3,w4,w5" (default 1,1,1.5,2,3)
    double rehearse = -1;         // overthink: share of classic (rehearsal) examples; < 0: the profile's default
    std::string mix;              // "fast,slow,cut" shares (the rest: fast-then-slow); default: the profile's
    bool export_partial = false;  // also write --out when stopped by --minutes
    // Spike guard: when the mean loss of the last 20 steps exceeds spike_factor x the mean of the 200 before,
    // restore the weights of a snapshot 100-199 steps back, scale the LR by 0.7 and re-warm (0: off).
    double spike_factor = 0;
    // Host AdamW (on with --profile overthink; tools/train/host_adamw.h): ggml-opt computes the gradients only; a
    // step with a non-finite or outlier gradient is skipped, weights and moments untouched.
    bool host_adamw = false;
    // --anchor L (host AdamW only): L2-SP towards the run's starting weights (ckpt-0 of the checkpoint dir, so a
    // resumed run anchors to the same point): w -= lr * L * (w - w0) each step, beside the weight decay.
    double anchor = 0;
    // --grow-layers K (with --init-from, on an empty checkpoint dir): K blocks on top of the model's, each an
    // identity block at the start (zero attention-output and FFN-down weights, the rest as a fresh model's), so
    // the fine-tune starts from the same function with more capacity. --train-layers L: only blocks L.. are
    // trained (-1: every weight); with L = the old depth the old blocks, embedding and head stay as they were.
    int grow_layers = 0;
    int train_layers_from = -1;
    // The overthinking fine-tune (scripts/train-overthink.sh): --profile overthink selects its texts and mixture
    // (tools/train/data.h) and writes Qwen3's real chat template; --init-from starts an empty checkpoint dir from
    // a trained model instead of random weights, with qwen3.context_length set to --ctx (0: keep the file's) and
    // qwen3.rope.freq_base to --rope-base (0: keep the file's; a larger base for a longer context, as Code Llama's
    // "adjusted base frequency" or NTK-aware scaling: base * s^(D/(D-2)) for s times the trained context).
    std::string profile = "classic";
    std::string init_from;
    int ctx = 0;
    float rope_base = 0;
};

// The run's own LR state on top of the schedule: an --rewarm-step ramp after a resume or a spike-guard restore, and
// the spike guard's scale (kept in checkpoints as kvlens.train.lr_scale_ppm).
struct LrState {
    double rewarm_from = 0, rewarm_until = -1;
    double scale = 1;
};

// The LR at optimizer step t: linear warm-up, then cosine decay to 10% of --lr at --steps (from --cosine-from when
// set), times the re-warm ramp and the guard's scale.
double scheduled_lr(const TrainArgs & a, const LrState & s, int64_t t);

int run_train(const TrainArgs & a);

struct EvalArgs {
    std::string model = "models/kvlens-reasoner.gguf";
    int per_level = 200;
    uint64_t seed = 0;   // evaluation problems use seeds kArithEvalSeedBit | (seed*1e6 + i)
    int short_cutoff = 0;  // 0: 16 tokens for the classic model, 64 for the overthinking one (docs/MODEL.md)
    int threads = 2;
    int max_new = 0;     // 0: the model's context minus the longest prompt (the classic model: 160 suffices)
    std::string jsonl;   // optional per-problem records
    std::string profile = "auto";  // classic | overthink | auto (overthink when the model carries Qwen3's template)
    int n_parallel = 1;  // -np/--parallel: problems decoded together (the same report and JSONL for any value)
};

// kvlens::Error for a.n_parallel < 1.
int run_eval(const EvalArgs & a);

}  // namespace kvlens::train
