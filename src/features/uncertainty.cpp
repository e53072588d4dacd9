// Output-based baselines: maxprob, perplexity, entropy. See include/kvlens/uncertainty.h.
#include "kvlens/uncertainty.h"

#include <cfloat>
#include <cmath>
#include <string>

#include "kvlens/error.h"

namespace kvlens {

namespace {
constexpr double kEntropyEps = 1e-12;
}

TokenUncertainty token_uncertainty(const float * logits, int n_vocab, int chosen) {
    if (n_vocab <= 0) throw Error("token_uncertainty: empty vocabulary");
    if (chosen < 0 || chosen >= n_vocab)
        throw Error("token_uncertainty: chosen token " + std::to_string(chosen) + " outside [0, " +
                    std::to_string(n_vocab) + ")");
    double mx = -INFINITY;
    for (int i = 0; i < n_vocab; ++i) mx = std::fmax(mx, (double) logits[i]);
    if (!std::isfinite(mx)) throw Error("token_uncertainty: logits have no finite maximum");
    double z = 0, s = 0;  // z = Σ e^(l−mx), s = Σ e^(l−mx)·(l−mx)
    for (int i = 0; i < n_vocab; ++i) {
        const double d = logits[i] - mx;
        if (d == -INFINITY) continue;
        const double e = std::exp(d);
        z += e;
        s += e * d;
    }
    const double log_z = std::log(z);
    TokenUncertainty t;
    t.maxprob = 1.0 / z;
    t.logprob = (logits[chosen] - mx) - log_z;
    // H = −Σ p log p = log z − s / z  (nats)
    t.entropy_bits = std::fmax(0.0, (log_z - s / z) / std::log(2.0));
    return t;
}

void UncertaintyAccumulator::add(double maxprob, double logprob_chosen, double entropy_bits) {
    ++n_;
    sum_maxprob_ += maxprob;
    sum_log_maxprob_ += std::log(std::fmax(maxprob, DBL_MIN));
    sum_logprob_ += logprob_chosen;
    sum_entropy_ += entropy_bits;
}

std::optional<double> UncertaintyAccumulator::maxprob() const {
    if (n_ == 0) return std::nullopt;
    return sum_maxprob_ / n_;
}

std::optional<double> UncertaintyAccumulator::perplexity() const {
    if (n_ == 0) return std::nullopt;
    return std::exp(-sum_log_maxprob_ / n_);
}

std::optional<double> UncertaintyAccumulator::perplexity_chosen() const {
    if (n_ == 0) return std::nullopt;
    return std::exp(-sum_logprob_ / n_);
}

std::optional<double> UncertaintyAccumulator::entropy() const {
    if (n_ == 0) return std::nullopt;
    return sum_entropy_ / n_;
}

std::optional<UncertaintyScores> UncertaintyAccumulator::scores() const {
    if (n_ == 0) return std::nullopt;
    UncertaintyScores s;
    s.maxprob = *maxprob();
    s.inv_ppl = 1.0 / *perplexity();
    s.inv_entropy = 1.0 / (*entropy() + kEntropyEps);
    return s;
}

}  // namespace kvlens
