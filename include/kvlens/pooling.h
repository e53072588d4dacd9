// Pooling: the paper's knobs that turn the K/V rows of one text into one vector (Xing et al., ICLR 2026, §3).
//
//   kv_part   k | v | kv        which cache tensor; kv concatenates [K ; V] inside each layer
//   pos_agg   mean|sum|last|first   over the token axis (only positions in [start, end) of the pooler)
//   head_agg  mean | flatten    over the kv-head axis of a row laid out [kv_head][head_dim]
//   layers    "last:N" | "i,j,k" | ranges | "all"   (kvlens::parse_layers)
//   layer_agg mean|sum|last|flatten  over the chosen layers (last = the highest chosen layer)
//   normalize l2 | none
//   source    kv | hidden | random  (the authors' baselines)
//
// Output layout: flatten over layers gives [layer][part][head][dim] with part K before V; with head_agg mean a
// part is head_dim wide, with flatten n_head_kv*head_dim wide.
// source=hidden pools the hidden states (l_out-<il>) of the same layers with the same pos/layer aggregation;
// kv_part and head_agg do not apply (a hidden state has no heads), so its width is n_embd per layer.
// source=random draws a seeded Gaussian vector with the dimension the KV configuration would have; the
// vector depends only on (seed, text), so it is the same wherever and with whatever batch the text is run.
//
// Every aggregation here is linear, so the streaming pooler keeps per layer only a running sum (mean/sum),
// the first or the last full row, and applies head and layer aggregation once at the end.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kvlens/tap.h"

namespace kvlens {

enum class KvPart { K, V, KV };
enum class PosAgg { Mean, Sum, Last, First };
enum class HeadAgg { Mean, Flatten };
enum class LayerAgg { Mean, Sum, Last, Flatten };
enum class Normalize { L2, None };
enum class EmbedSource { Kv, Hidden, Random };

struct PoolConfig {
    EmbedSource source = EmbedSource::Kv;
    KvPart kv_part = KvPart::KV;
    PosAgg pos_agg = PosAgg::Mean;
    HeadAgg head_agg = HeadAgg::Mean;
    std::string layers = "last:4";
    LayerAgg layer_agg = LayerAgg::Mean;
    Normalize normalize = Normalize::L2;
    uint64_t seed = 42;  // source=random only

    // Named presets: "paper" (kv, token mean, head mean, last 4 layers mean, L2 — 256-d on Llama-3.1-8B).
    // Unknown name: kvlens::Error listing the known ones.
    static PoolConfig preset(const std::string & name);
    static std::vector<std::string> preset_names();

    // Set one knob from its CLI spelling: knob in {kv-part, pos, heads, layers, layer-agg, normalize, source}.
    // Unknown knob or value: kvlens::Error naming the accepted values.
    void set(const std::string & knob, const std::string & value);
    // The knobs' CLI names (without "--") and help, for commands that expose them as options.
    struct Knob {
        const char * name;
        const char * help;
    };
    static const std::vector<Knob> & knobs();
    // A preset, then every non-empty value in `values` (knob name -> CLI spelling) applied with set().
    static PoolConfig from_knobs(const std::string & preset, const std::map<std::string, std::string> & values);
    // One line, e.g. "source=kv kv_part=kv pos=mean heads=mean layers=last:4 layer_agg=mean norm=l2".
    std::string describe() const;
};

KvPart parse_kv_part(const std::string & s);
PosAgg parse_pos_agg(const std::string & s);
HeadAgg parse_head_agg(const std::string & s);
LayerAgg parse_layer_agg(const std::string & s);
Normalize parse_normalize(const std::string & s);
EmbedSource parse_source(const std::string & s);
const char * to_string(KvPart v);
const char * to_string(PosAgg v);
const char * to_string(HeadAgg v);
const char * to_string(LayerAgg v);
const char * to_string(Normalize v);
const char * to_string(EmbedSource v);

// Shape of what the model gives the pooler.
struct PoolShape {
    int n_head_kv = 0;
    int head_dim = 0;  // K and V rows are n_head_kv * head_dim floats
    int n_embd = 0;    // hidden-state width (source=hidden)
    int row_size() const { return n_head_kv * head_dim; }
};

// Dimension of the pooled vector for a configuration, given how many layers it selects.
int pooled_dim(const PoolConfig & cfg, const PoolShape & shape, int n_layers_selected);

// The TapSpec a pooler of this configuration needs (kv rows or hidden rows of the chosen layers).
TapSpec pool_tap_spec(const PoolConfig & cfg, const std::vector<int> & layers);

// Streaming pooler: subscribe it to a Session (or feed it rows directly); it keeps O(layers * row) floats.
// Only positions in [start, end) are pooled (end < 0: no upper bound), so a caller can leave out a prefix
// (BOS, a prompt template) or padding. Positions must arrive in order within a layer.
class KvPooler : public TapConsumer {
public:
    // layers: the resolved layer indices (ascending), e.g. from parse_layers(cfg.layers, n_layer).
    KvPooler(const PoolConfig & cfg, const PoolShape & shape, std::vector<int> layers);

    void on_kv(int layer, int pos, const float * k, const float * v, int row_size) override;
    void on_hidden(int layer, int pos, const float * h, int n_embd) override;
    // Cutting back to or below `start` forgets everything; a cut inside already-pooled positions cannot be
    // undone on running sums and makes result() throw.
    void on_rewind(int pos) override;

    void set_range(int start, int end = -1);
    void reset();  // forget every pooled row (keeps the range)
    int n_pooled(int slot = 0) const { return slots_[slot].n; }  // positions pooled for a layer slot
    const std::vector<int> & layers() const { return layers_; }
    int dim() const;

    // The pooled vector. Throws kvlens::Error if a chosen layer saw no position in range.
    std::vector<float> result() const;
    void result(float * out) const;  // dim() floats

private:
    struct Slot {
        std::vector<double> sum;   // parts side by side: [K row][V row] (or one hidden row)
        std::vector<float> first, last;
        int n = 0, last_pos = -1;
    };
    void add(int slot, int pos, const float * a, const float * b, int width_a, int width_b);
    int slot_of(int layer) const;

    PoolConfig cfg_;
    PoolShape shape_;
    std::vector<int> layers_;
    std::vector<Slot> slots_;
    int start_ = 0, end_ = -1;
    bool broken_ = false;
};

// Plain reference on stored rows: the same vector as KvPooler for positions [start, end) of a KvStore
// (computed head-first, then tokens, then layers — a different order than the streaming path).
std::vector<float> pool_rows(const KvStore & store, const PoolConfig & cfg, const PoolShape & shape,
                             const std::vector<int> & layers, int start = 0, int end = -1);

// Head aggregation + layer aggregation + normalisation of per-layer token-pooled rows:
// rows[slot] holds the token-pooled row of that layer ([K][V] parts for kv, one hidden row for hidden).
std::vector<float> finish_pooled(const PoolConfig & cfg, const PoolShape & shape,
                                 const std::vector<std::vector<double>> & rows);

// source=random: a seeded Gaussian vector of `dim` floats keyed by (seed, text), normalised as cfg says.
std::vector<float> random_embedding(const PoolConfig & cfg, int dim, const std::string & text);

void l2_normalize(float * x, int n);

}  // namespace kvlens
