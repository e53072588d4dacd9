// KvWindow: the KVClassifier's input (Xing et al., ICLR 2026, §4) — the K/V rows of the last seq_len positions
// of chosen layers, kept as a ring buffer fed by the tap, pooled on demand the paper's way:
//   [K;V] concatenated inside a layer (kv_part), summed over the window's positions (pos_agg sum; mean as an
//   option), heads flattened (head_agg; mean as an option), mean over the chosen layers (layer_agg; sum/flatten).
// Only real tokens count: a window shorter than seq_len (a short prompt, the start of a sequence, positions
// lost to a rewind) pools the positions it has. The authors padded to seq_len with EOS; kvlens does not.
// No normalisation: the classifier standardises its inputs itself.
#pragma once
#include <string>
#include <vector>

#include "kvlens/pooling.h"
#include "kvlens/tap.h"

namespace kvlens {

struct WindowConfig {
    int seq_len = 16;                  // positions in the window (> 0)
    std::string layers = "last:4";     // parse_layers spelling ("last:N", "0,3,5", "all")
    KvPart kv_part = KvPart::KV;
    PosAgg pos_agg = PosAgg::Sum;      // Sum | Mean
    HeadAgg head_agg = HeadAgg::Flatten;
    LayerAgg layer_agg = LayerAgg::Mean;  // Mean | Sum | Flatten
    // Kv: the K/V rows (the paper). Hidden: the hidden state after each chosen layer instead, pooled the same way
    // (the hidden-state router of the router study: the same MLP, window and layers on what the KV replaces).
    EmbedSource source = EmbedSource::Kv;

    // Set a knob from its CLI spelling: seq-len, layers, kv-part, pos, heads, layer-agg, source (kv | hidden);
    // else kvlens::Error.
    void set(const std::string & knob, const std::string & value);
    // "seq_len=16 layers=last:4 kv_part=kv pos=sum heads=flatten layer_agg=mean" (stored in the classifier;
    // " source=hidden" appended for a hidden-state window).
    std::string describe() const;
    static WindowConfig parse(const std::string & described);  // inverse of describe()
    // The equivalent PoolConfig (normalize none) for finish_pooled / pool_rows.
    PoolConfig pool_config() const;
    void validate() const;  // kvlens::Error for unsupported values
};

class KvWindow : public TapConsumer {
public:
    // layers: resolved, ascending (parse_layers(cfg.layers, n_layer)).
    KvWindow(const WindowConfig & cfg, const PoolShape & shape, std::vector<int> layers);

    void on_kv(int layer, int pos, const float * k, const float * v, int row_size) override;
    void on_hidden(int layer, int pos, const float * h, int n_embd) override;
    void on_rewind(int pos) override;

    // Positions before `start` never count (e.g. a BOS token); default 0.
    void set_start(int start) { start_ = start; }
    void reset();  // forget every row

    // One past the last position every chosen layer has delivered (0 when empty).
    int end() const;
    // Real positions the window ending at end() holds (<= seq_len).
    int n_window() const { return n_window(end()); }
    int n_window(int end) const;
    // Pooled vector of the window [end - seq_len, end) (only positions still buffered, >= start, in every layer).
    // Throws kvlens::Error when that window holds no position.
    std::vector<float> features() const { return features(end()); }
    std::vector<float> features(int end) const;
    int dim() const;

    const WindowConfig & config() const { return cfg_; }
    const std::vector<int> & layers() const { return layers_; }
    const PoolShape & shape() const { return shape_; }

private:
    bool has(int slot, int pos) const;
    WindowConfig cfg_;
    PoolShape shape_;
    std::vector<int> layers_;
    void put(int slot, int pos, const float * a, const float * b, int n);
    int entry() const;  // floats per entry: 2 * row_size ([K row][V row]) or n_embd (hidden)
    std::vector<std::vector<float>> rows_;  // per slot: seq_len entries
    std::vector<std::vector<int>> pos_;     // per slot: position held by each entry (-1 none)
    std::vector<int> next_;                 // per slot: one past the highest position delivered
    int start_ = 0;
};

// A hidden-state window of layer l pools the hidden state that enters layer l — the output of layer l - 1, the
// embedding input for l = 0 —, the rows that layer's K and V are projected from (and, unlike the last layer's
// output, computed for every position). The tap such a window needs:
int window_hidden_layer(int layer);  // l - 1, or kEmbeddingLayer for 0
TapSpec window_tap_spec(const WindowConfig & cfg, const std::vector<int> & layers);

// Plain reference: the same vector computed from stored rows of positions [max(start, end - seq_len), end).
std::vector<float> window_reference(const KvStore & store, const WindowConfig & cfg, const PoolShape & shape,
                                    const std::vector<int> & layers, int end, int start = 0);

}  // namespace kvlens
