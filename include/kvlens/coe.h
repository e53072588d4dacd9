// Chain-of-Embedding (CoE) scores (Wang et al., ICLR 2025) on a chain of vectors x_0..x_N, and the
// three chains the KV-CoE work feeds (Xing et al., ICLR 2026): the KV token axis, the KV layer axis and
// the hidden-state layer axis. Formulas and conventions: docs/COE.md.
//
//   m_i = ‖x_{i+1} − x_i‖ / ‖x_N − x_0‖                       (magnitude change, i = 0..N-1)
//   a_i = arccos cos(x_{i+1}, x_i) / arccos cos(x_N, x_0)     (angle change; cosines clipped to [−1, 1])
//   Mag = mean m_i, Ang = mean a_i, R = Mag − Ang,
//   C   = sqrt((mean m_i cos a_i)² + (mean m_i sin a_i)²)      (a_i is the *normalised* angle, as in the
//                                                              CoE reference code)
// Degenerate chains (fewer than 2 points, ‖x_N − x_0‖ = 0, arccos cos(x_N, x_0) = 0, a zero-norm vector at
// either end, or any non-finite result) have no score: std::nullopt, never NaN.
#pragma once
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/pooling.h"  // KvPart (and parse_kv_part / to_string)
#include "kvlens/tap.h"

namespace kvlens {

struct CoeScores {
    double mag = 0, ang = 0, r = 0, c = 0;
};

// Reference (batch) computation on a whole chain. All vectors must have the same size (else kvlens::Error).
std::optional<CoeScores> coe_scores(const std::vector<std::vector<float>> & chain);

// Per-step scalars of a chain: d_i = ‖x_{i+1} − x_i‖ and θ_i = arccos cos(x_{i+1}, x_i). With the two
// normalisers D = ‖x_N − x_0‖ and Θ = arccos cos(x_N, x_0) they give the scores exactly (two doubles per step).
class CoeSteps {
public:
    void add(double d, double theta) { d_.push_back(d); theta_.push_back(theta); }
    void clear() { d_.clear(); theta_.clear(); }
    int size() const { return (int) d_.size(); }
    std::optional<CoeScores> scores(double D, double Theta) const;
    size_t state_floats() const { return d_.size() + theta_.size(); }  // scalars held (two per step)
    size_t state_bytes() const { return (d_.capacity() + theta_.capacity()) * sizeof(double); }  // allocated

private:
    std::vector<double> d_, theta_;
};

// Streaming token-axis chain: push one x_t per generated token. Memory: x_0, the previous x and two scalars
// per step (never tokens × width). Optionally L2-normalises each x_t before use (a zero vector stays zero).
class CoeTokenChain {
public:
    explicit CoeTokenChain(bool l2_normalize = false) : l2_(l2_normalize) {}
    void push(const float * x, int dim);  // dim must stay the same (else kvlens::Error)
    std::optional<CoeScores> result() const;
    int n_points() const { return n_; }
    int dim() const { return (int) first_.size(); }
    void reset();
    // Memory held: x_0, the previous x, the scratch x and two scalars per step (values; allocated bytes).
    size_t state_floats() const { return first_.size() + prev_.size() + cur_.size() + steps_.state_floats(); }
    size_t state_bytes() const {
        return (first_.capacity() + prev_.capacity() + cur_.capacity()) * sizeof(double) + steps_.state_bytes();
    }

private:
    bool l2_;
    int n_ = 0;
    std::vector<double> first_, prev_, cur_;
    CoeSteps steps_;
};

// Layer-axis chain: a running mean per layer slot (n_slots × width, independent of the number of tokens).
// result() is the CoE of the chain mean(slot 0), mean(slot 1), ... in slot order; nullopt while any slot
// has no data.
class CoeLayerChain {
public:
    explicit CoeLayerChain(int n_slots = 0) { reset(n_slots); }
    void accumulate(int slot, const float * x, int dim);  // all slots share one dim (else kvlens::Error)
    std::optional<CoeScores> result() const;
    std::vector<std::vector<float>> means() const;  // empty vectors for slots without data
    int n_slots() const { return (int) count_.size(); }
    long count(int slot) const { return count_.at(slot); }
    void reset(int n_slots);
    void reset() { reset(n_slots()); }
    // Memory held: one running sum per slot (n_slots × width) and one count per slot (values; allocated bytes).
    size_t state_floats() const {
        size_t n = count_.size();
        for (const auto & s : sum_) n += s.size();
        return n;
    }
    size_t state_bytes() const {
        size_t n = count_.capacity() * sizeof(long);
        for (const auto & s : sum_) n += s.capacity() * sizeof(double);
        return n;
    }

private:
    int dim_ = 0;
    std::vector<std::vector<double>> sum_;
    std::vector<long> count_;
};

struct KvCoeOptions {
    std::vector<int> layers;           // KV layers in the chains, ascending (others are ignored); empty: no KV chains
    KvPart kv_part = KvPart::KV;       // flattened [K;V], K only or V only
    bool l2_normalize = false;         // L2-normalise each token's x_t (token axis only)
    std::vector<int> hidden_layers;    // layers of the hidden-state chain, ascending; empty: no hidden chain
    bool hidden_embedding = true;      // the hidden chain starts at x_0 = embedding-layer input
    int start_pos = 0;                 // first generated position; earlier positions (the prompt) are ignored
};

// A TapConsumer that feeds three CoE chains from the tap, all over generated positions (pos >= start_pos):
//   token axis : x_t = mean over options.layers of the token's flattened row (kv_part), optionally L2-normalised;
//                a token is folded in (in position order) once all chosen layers arrived for it, or, with the
//                layers it has, once the next ubatch starts (the layer slot goes down) or token_axis() is asked;
//                works for decode (token by token) and for batches (layer by layer over positions);
//   layer axis : x_l = mean over generated tokens of layer l's flattened row (kv_part);
//   hidden     : x_l = mean over generated tokens of the hidden state after layer l, x_0 = embedding input.
// on_rewind(pos): pos <= start_pos clears all data (start_pos is kept; call reset() to move it). A rewind that
// cuts generated positions already received (pos <= the highest one seen) cannot be undone in O(width) memory:
// the consumer becomes invalid (valid() false, all results nullopt) until reset(). Other rewinds change nothing.
// A row of a different size from the first (mixed per-layer widths) throws kvlens::Error.
class KvCoeConsumer : public TapConsumer {
public:
    explicit KvCoeConsumer(KvCoeOptions options);
    void on_kv(int layer, int pos, const float * k, const float * v, int row_size) override;
    void on_hidden(int layer, int pos, const float * h, int n_embd) override;
    void on_rewind(int pos) override;

    void reset(int start_pos);  // forget everything; generated tokens start at start_pos
    std::optional<CoeScores> token_axis();  // folds in pending tokens first
    std::optional<CoeScores> layer_axis() const;
    std::optional<CoeScores> hidden() const;
    int n_tokens() const { return token_.n_points(); }
    bool valid() const { return valid_; }
    const KvCoeOptions & options() const { return opt_; }
    // Memory of the three chains plus pending token rows and scratch: scalar values held (all doubles except
    // the float scratch row) and bytes allocated. Independent of the number of tokens except two scalars per
    // token-axis step; pending rows are bounded by the batch size and empty after token_axis().
    size_t state_floats() const;
    size_t state_bytes() const;

private:
    struct Pending {
        std::vector<double> sum;
        int n_layers = 0;
    };
    void fold_ready(int force_below);
    void fold(Pending & p);
    int kv_slot(int layer) const;
    int hidden_slot(int layer) const;

    KvCoeOptions opt_;
    bool valid_ = true;
    int max_pos_ = -1;   // highest generated position received
    int last_slot_ = -1; // KV slot of the previous on_kv call
    std::map<int, Pending> pending_;  // token-axis rows still waiting for layers, by position
    std::vector<float> row_;          // scratch: one flattened row
    CoeTokenChain token_;
    CoeLayerChain layer_, hidden_;
};

}  // namespace kvlens
