// KvCoeConsumer: feeds the KV token-axis, KV layer-axis and hidden-state CoE chains from tap callbacks.
// Depends only on the TapConsumer interface (kvlens/tap.h), never on the engine.
#include <algorithm>
#include <climits>
#include <string>

#include "kvlens/coe.h"
#include "kvlens/error.h"
#include "kvlens/tap.h"

namespace kvlens {

namespace {

void check_layers(const std::vector<int> & layers, const char * what) {
    for (size_t i = 0; i < layers.size(); ++i) {
        if (layers[i] < 0) throw Error(std::string("KvCoeConsumer: negative layer in ") + what);
        if (i > 0 && layers[i] <= layers[i - 1])
            throw Error(std::string("KvCoeConsumer: ") + what + " must be ascending and unique");
    }
}

int index_of(const std::vector<int> & v, int x) {
    auto it = std::lower_bound(v.begin(), v.end(), x);
    return (it != v.end() && *it == x) ? (int) (it - v.begin()) : -1;
}

}  // namespace

KvCoeConsumer::KvCoeConsumer(KvCoeOptions options) : opt_(std::move(options)), token_(opt_.l2_normalize) {
    check_layers(opt_.layers, "layers");
    check_layers(opt_.hidden_layers, "hidden_layers");
    if (opt_.start_pos < 0) throw Error("KvCoeConsumer: negative start position");
    reset(opt_.start_pos);
}

void KvCoeConsumer::reset(int start_pos) {
    if (start_pos < 0) throw Error("KvCoeConsumer: negative start position");
    opt_.start_pos = start_pos;
    valid_ = true;
    max_pos_ = -1;
    last_slot_ = -1;
    pending_.clear();
    token_.reset();
    layer_.reset((int) opt_.layers.size());
    const int n_hidden = opt_.hidden_layers.empty() ? 0 : (int) opt_.hidden_layers.size() + (opt_.hidden_embedding ? 1 : 0);
    hidden_.reset(n_hidden);
}

int KvCoeConsumer::kv_slot(int layer) const { return index_of(opt_.layers, layer); }

int KvCoeConsumer::hidden_slot(int layer) const {
    if (opt_.hidden_layers.empty()) return -1;
    const int off = opt_.hidden_embedding ? 1 : 0;
    if (layer == kEmbeddingLayer) return opt_.hidden_embedding ? 0 : -1;
    const int i = index_of(opt_.hidden_layers, layer);
    return i < 0 ? -1 : i + off;
}

void KvCoeConsumer::on_kv(int layer, int pos, const float * k, const float * v, int row_size) {
    if (!valid_ || pos < opt_.start_pos) return;
    const int slot = kv_slot(layer);
    if (slot < 0) return;
    // Within one ubatch the tap walks layers upwards; a lower slot than the last one starts a new ubatch, so every
    // token before this position has received all the layers it will get.
    const bool new_ubatch = slot < last_slot_;
    last_slot_ = slot;
    if (new_ubatch) fold_ready(pos);

    row_.clear();
    if (opt_.kv_part != KvPart::V) row_.insert(row_.end(), k, k + row_size);
    if (opt_.kv_part != KvPart::K) row_.insert(row_.end(), v, v + row_size);
    const int n = (int) row_.size();
    max_pos_ = std::max(max_pos_, pos);
    layer_.accumulate(slot, row_.data(), n);

    Pending & p = pending_[pos];
    if (p.sum.empty()) p.sum.assign(n, 0.0);
    if ((int) p.sum.size() != n)
        throw Error("KvCoeConsumer: layer " + std::to_string(layer) + " row has " + std::to_string(n) +
                    " values, expected " + std::to_string(p.sum.size()));
    for (int i = 0; i < n; ++i) p.sum[i] += row_[i];
    ++p.n_layers;
    fold_ready(-1);
}

// Folds pending tokens into the token chain in position order: complete ones (all chosen layers arrived) and,
// below `force_below`, incomplete ones too.
void KvCoeConsumer::fold_ready(int force_below) {
    const int n_layers = (int) opt_.layers.size();
    while (!pending_.empty()) {
        auto it = pending_.begin();
        if (it->second.n_layers < n_layers && it->first >= force_below) break;
        fold(it->second);
        pending_.erase(it);
    }
}

void KvCoeConsumer::fold(Pending & p) {
    std::vector<float> x(p.sum.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = (float) (p.sum[i] / p.n_layers);
    token_.push(x.data(), (int) x.size());
}

void KvCoeConsumer::on_hidden(int layer, int pos, const float * h, int n_embd) {
    if (!valid_ || pos < opt_.start_pos) return;
    const int slot = hidden_slot(layer);
    if (slot < 0) return;
    max_pos_ = std::max(max_pos_, pos);
    hidden_.accumulate(slot, h, n_embd);
}

void KvCoeConsumer::on_rewind(int pos) {
    if (pos <= opt_.start_pos) {
        reset(opt_.start_pos);
    } else if (pos <= max_pos_) {
        valid_ = false;
        pending_.clear();
    }
}

std::optional<CoeScores> KvCoeConsumer::token_axis() {
    if (!valid_) return std::nullopt;
    fold_ready(INT_MAX);
    return token_.result();
}

std::optional<CoeScores> KvCoeConsumer::layer_axis() const {
    if (!valid_) return std::nullopt;
    return layer_.result();
}

std::optional<CoeScores> KvCoeConsumer::hidden() const {
    if (!valid_) return std::nullopt;
    return hidden_.result();
}

size_t KvCoeConsumer::state_floats() const {
    size_t n = row_.size() + token_.state_floats() + layer_.state_floats() + hidden_.state_floats();
    for (const auto & [pos, p] : pending_) n += p.sum.size();
    return n;
}

size_t KvCoeConsumer::state_bytes() const {
    size_t n = row_.capacity() * sizeof(float) + token_.state_bytes() + layer_.state_bytes() + hidden_.state_bytes();
    for (const auto & [pos, p] : pending_) n += p.sum.capacity() * sizeof(double) + sizeof(Pending);
    return n;
}

}  // namespace kvlens
