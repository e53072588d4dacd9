// KvClassifier: the paper's difficulty probe (Xing et al., ICLR 2026, §4) — an MLP input → hidden (ReLU) → 1 on a
// pooled KV window (kvlens/window.h), trained with MSE on difficulty labels (paper rule: 0 fast right and short,
// 25 fast right but long, 75 only slow right, 100 both wrong) with Adam on ggml-opt, a held-out validation split
// and best-checkpoint selection. Inputs are standardised with the training split's mean/std (stored with it);
// the net regresses label/100 and predict() returns the 0..100 scale.
//
// Saved as GGUF (general.architecture "kvlens-probe") with the LLM's fingerprint (arch, layers, KV heads, head dim),
// the window settings, the feature variant and the label scheme; check() refuses another model or other settings.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kvlens/model.h"
#include "kvlens/window.h"

namespace kvlens {

struct ProbeFingerprint {
    std::string arch;
    int n_layer = 0, n_head_kv = 0, head_dim = 0;
    static ProbeFingerprint of(const ModelFacts & f);
    std::string describe() const;  // "qwen3 L6 kv2x32"
    bool operator==(const ProbeFingerprint & o) const {
        return arch == o.arch && n_layer == o.n_layer && n_head_kv == o.n_head_kv && head_dim == o.head_dim;
    }
};

struct ProbeMeta {
    ProbeFingerprint model;
    WindowConfig window;
    std::string variant = "chat";       // prompt features: chat (template-wrapped) | raw (the question alone)
    std::string label_scheme = "paper"; // paper: 0/25/75/100 (+ switch-aware 0/100 when trained with them)
    bool switch_aware = false;          // trained with windows inside slow traces
    int short_cutoff = 0;               // label 0 vs 25: fast answers of at most this many tokens are "short"
    int input_dim = 0, hidden = 0;
    int n_train = 0, n_val = 0;
    double val_mse = 0;                 // best validation MSE (label scale 0..100, squared)
    // How the training windows were made (probe prep): KV cache types and flash attention change V rows by a few
    // percent and scores by several points (docs/THINK.md). Empty: not recorded (older classifiers).
    std::string cache_type_k, cache_type_v, flash_attn;
    std::string prompt;                 // PromptFormat::describe() of the prep run
};

struct ProbeTrainParams {
    int hidden = 512;
    double lr = 1e-5;        // the paper's
    int batch = 1024;        // the paper's (clipped to the training set)
    int epochs = 200;
    double val_frac = 0.2;   // held-out share (the authors evaluated on training data)
    double weight_decay = 0; // AdamW decay (0: Adam)
    int patience = 0;        // stop after this many epochs without a better validation MSE (0: never)
    uint64_t seed = 42;
    int threads = 1;
    std::function<void(int epoch, double train_mse, double val_mse)> on_epoch;  // progress (label scale)
};

class KvClassifier {
public:
    KvClassifier() = default;
    // X: rows of meta.window's pooled features (same width), y: labels on 0..100. groups: optional id per row —
    // rows of one group (one question) all land on the same side of the split. Throws on bad input.
    static KvClassifier train(const std::vector<std::vector<float>> & X, const std::vector<float> & y,
                              ProbeMeta meta, const ProbeTrainParams & params, const std::vector<int> & groups = {});

    // A classifier that scores every input `score` (zero weights): for tests and benchmarks of the policy.
    static KvClassifier constant(ProbeMeta meta, int input_dim, float score, int hidden = 512);

    // Difficulty score on 0..100 (not clipped).
    float predict(const std::vector<float> & x) const;
    float predict(const float * x, int dim) const;

    void save(const std::string & path) const;
    static KvClassifier load(const std::string & path);  // kvlens::Error for a missing or foreign file

    // The classifier next to a model: kvlens::Error naming both fingerprints when they differ.
    void check_model(const ModelFacts & facts) const;
    // Settings given on the command line that must match the stored ones.
    void check_window(const WindowConfig & w) const;
    // One warning line (empty when they match or the classifier does not record them) for other cache settings.
    std::string cache_mismatch(const std::string & type_k, const std::string & type_v, const std::string & flash_attn) const;

    const ProbeMeta & meta() const { return meta_; }
    bool empty() const { return w1_.empty(); }

private:
    ProbeMeta meta_;
    std::vector<float> mu_, sd_;     // input standardisation
    std::vector<float> w1_, b1_;     // [hidden][input] row-major, [hidden]
    std::vector<float> w2_;          // [hidden]
    float b2_ = 0;
};

}  // namespace kvlens
