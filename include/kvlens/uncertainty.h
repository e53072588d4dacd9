// Output-based self-evaluation baselines (as in the CoE work, Wang et al. ICLR 2025): per-answer means of
// per-token quantities of the next-token distribution. Definitions (docs/COE.md):
//   maxprob    = mean_t max_v p_t(v)
//   perplexity = exp(−mean_t log max_v p_t(v))       (of the max-prob token; = of the chosen token under greedy)
//   entropy    = mean_t H(p_t), in bits
// Scores where higher = more likely correct: maxprob, 1/perplexity, 1/(entropy + 1e-12) (the 1e-12 keeps an
// all-certain answer (entropy 0) finite and preserves the order of every other answer).
#pragma once
#include <optional>

namespace kvlens {

struct TokenUncertainty {
    double maxprob = 0;       // max softmax probability
    double logprob = 0;       // natural log of the chosen token's probability
    double entropy_bits = 0;  // entropy of the distribution, base 2
};

// From raw logits (softmax at temperature 1, computed stably). chosen in [0, n_vocab) (else kvlens::Error);
// logits of −inf are allowed (probability 0).
TokenUncertainty token_uncertainty(const float * logits, int n_vocab, int chosen);

struct UncertaintyScores {
    double maxprob = 0;      // higher = more confident
    double inv_ppl = 0;      // 1 / perplexity, in (0, 1]
    double inv_entropy = 0;  // 1 / (entropy_bits + 1e-12)
};

class UncertaintyAccumulator {
public:
    // maxprob in [0, 1]; a maxprob of 0 is taken as the smallest positive double for the log (perplexity finite).
    void add(double maxprob, double logprob_chosen, double entropy_bits);
    void add(const TokenUncertainty & t) { add(t.maxprob, t.logprob, t.entropy_bits); }
    void add_logits(const float * logits, int n_vocab, int chosen) { add(token_uncertainty(logits, n_vocab, chosen)); }
    void reset() { *this = UncertaintyAccumulator(); }

    int n_tokens() const { return n_; }
    // The means below are nullopt for an empty answer (no tokens).
    std::optional<double> maxprob() const;            // mean max softmax probability
    std::optional<double> perplexity() const;         // exp(−mean log maxprob)
    std::optional<double> perplexity_chosen() const;  // exp(−mean log p(chosen))
    std::optional<double> entropy() const;            // mean entropy, bits
    std::optional<UncertaintyScores> scores() const;

private:
    int n_ = 0;
    double sum_maxprob_ = 0, sum_log_maxprob_ = 0, sum_logprob_ = 0, sum_entropy_ = 0;
};

}  // namespace kvlens
