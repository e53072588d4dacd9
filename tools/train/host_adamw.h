// AdamW on the host, for runs whose gradients can spike (the overthinking fine-tune): ggml-opt only computes the
// gradients (its optimizer step is never built into the graph that runs), so a step whose gradient is non-finite
// or an outlier can be skipped without touching the weights or the moments, and every gradient element is
// clamped before it enters the second moment (no overflow to inf).
#pragma once
#include <cstdint>
#include <deque>
#include <vector>

#include "ggml-opt.h"
#include "reasoner.h"

namespace kvlens::train {

// The gradient scale of a ggml-opt context built with this opt_period: ggml-opt divides the loss by opt_period
// and only steps its own optimizer every opt_period evals, which a run never reaches.
constexpr int32_t kHostAdamwPeriod = 1 << 20;

struct HostAdamw {
    double beta1 = 0.9, beta2 = 0.99, eps = 1e-8, wd = 0.1;
    double clamp = 1e6;        // |gradient element| cap (the gradients are unscaled first)
    double skip_factor = 20;   // skip a step whose gradient norm exceeds this x the median of the last 200 steps
    int64_t t = 0;             // steps taken (bias correction)
    std::vector<std::vector<float>> m, v;
    std::deque<double> norms;  // the last 200 accepted gradient norms
    int64_t skipped = 0;
    // L2-SP (Li et al., "Explicit Inductive Bias for Transfer Learning with Convolutional Networks", ICML 2018),
    // decoupled like AdamW's decay: each step also pulls every weight towards its starting value,
    // w -= lr * anchor * (w - w0). Empty w0 or anchor 0: off.
    double anchor = 0;
    std::vector<std::vector<float>> w0;  // per trained weight (w.trained order)

    // Reads the gradients ggml-opt accumulated for w's trained weights (w.trained), zeroes the accumulators (ggml_opt_reset), and
    // steps with learning rate lr unless the gradient is non-finite or an outlier. Returns the gradient norm
    // (negative when the step was skipped).
    double step(ggml_opt_context_t opt, const Weights & w, double lr);
};

}  // namespace kvlens::train
