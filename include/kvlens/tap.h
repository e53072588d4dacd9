// KV tap: the K and V rows exactly as llama.cpp writes them into the KV cache (K after RoPE and any
// k-norm, V as computed before the cache write), as f32, for a chosen set of layers, for every token
// (prompt and generated). Optional hidden-state capture (output of each chosen layer and the
// embedding-layer input) for baselines.
//
// Layout of one row: [kv_head][head_dim] (n_head_kv * head_dim floats), the order llama.cpp uses.
// Data flows forward once: each row is read from the backend once (ggml_backend_tensor_get) and
// handed to every subscribed consumer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvlens {

// Layer index of the embedding-layer input in hidden-state callbacks (the input of layer 0).
constexpr int kEmbeddingLayer = -1;

struct TapSpec {
    std::vector<int> layers;      // which layers to tap (ascending, unique); empty = none
    bool kv = true;               // capture K and V rows of those layers
    bool hidden = false;          // capture hidden state after each of those layers (l_out-<il>)
    bool hidden_embedding = false;  // also capture the embedding-layer input (layer kEmbeddingLayer)
};

// Parse a layer selection: "all", "last:N" / "lastN" / "last N", or a list "0,3,5" / ranges "2-5".
// Validates against n_layer: out of range or duplicated indices throw kvlens::Error.
std::vector<int> parse_layers(const std::string & spec, int n_layer);
// What two readers need together: the union of the layers, kv / hidden / hidden_embedding when either wants it.
TapSpec tap_union(const TapSpec & a, const TapSpec & b);

// Streaming interface: called once per token per layer, in position order within a layer.
class TapConsumer {
public:
    virtual ~TapConsumer() = default;
    // k and v have row_size floats each ([kv_head][head_dim]).
    virtual void on_kv(int layer, int pos, const float * k, const float * v, int row_size) {}
    // h has n_embd floats; layer == kEmbeddingLayer for the embedding-layer input.
    virtual void on_hidden(int layer, int pos, const float * h, int n_embd) {}
    // The sequence was cut back: every position >= pos is gone (it will be written again).
    virtual void on_rewind(int pos) {}
};

// A consumer that stores every row it receives: rows[layer slot][pos] (for kv-dump, tests, pooling).
class KvStore : public TapConsumer {
public:
    KvStore(std::vector<int> layers, int row_size, int n_embd = 0);
    void on_kv(int layer, int pos, const float * k, const float * v, int row_size) override;
    void on_hidden(int layer, int pos, const float * h, int n_embd) override;
    void on_rewind(int pos) override;

    const std::vector<int> & layers() const { return layers_; }
    int slot(int layer) const;        // index of a layer in layers(), -1 if not tapped
    int row_size() const { return row_size_; }
    int n_embd() const { return n_embd_; }
    int n_pos(int slot) const { return (int) k_[slot].size() / row_size_; }   // positions stored for a layer
    const float * k(int slot, int pos) const { return k_[slot].data() + (size_t) pos * row_size_; }
    const float * v(int slot, int pos) const { return v_[slot].data() + (size_t) pos * row_size_; }
    // hidden rows: slot in layers() or hidden_slot_embedding() for the embedding input
    int hidden_slot_embedding() const { return (int) layers_.size(); }
    int n_hidden_pos(int hslot) const { return n_embd_ ? (int) h_[hslot].size() / n_embd_ : 0; }
    const float * hidden(int hslot, int pos) const { return h_[hslot].data() + (size_t) pos * n_embd_; }

private:
    std::vector<int> layers_;
    int row_size_, n_embd_;
    std::vector<std::vector<float>> k_, v_, h_;
};

}  // namespace kvlens
