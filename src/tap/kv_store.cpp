#include <algorithm>

#include "kvlens/error.h"
#include "kvlens/tap.h"

namespace kvlens {

KvStore::KvStore(std::vector<int> layers, int row_size, int n_embd)
    : layers_(std::move(layers)), row_size_(row_size), n_embd_(n_embd),
      k_(layers_.size()), v_(layers_.size()), h_(layers_.size() + 1) {}

int KvStore::slot(int layer) const {
    if (layer == kEmbeddingLayer) return hidden_slot_embedding();
    auto it = std::find(layers_.begin(), layers_.end(), layer);
    return it == layers_.end() ? -1 : (int) (it - layers_.begin());
}

static void put_row(std::vector<float> & dst, int pos, const float * x, int n) {
    size_t need = (size_t) (pos + 1) * n;
    if (dst.size() < need) dst.resize(need, 0.0f);
    std::copy(x, x + n, dst.begin() + (size_t) pos * n);
}

void KvStore::on_kv(int layer, int pos, const float * k, const float * v, int row_size) {
    int s = slot(layer);
    if (s < 0 || s >= (int) layers_.size()) return;
    if (row_size != row_size_) throw Error("KvStore: row size mismatch");
    put_row(k_[s], pos, k, row_size);
    put_row(v_[s], pos, v, row_size);
}

void KvStore::on_hidden(int layer, int pos, const float * h, int n_embd) {
    int s = slot(layer);
    if (s < 0 || n_embd_ == 0) return;
    if (n_embd != n_embd_) throw Error("KvStore: hidden width mismatch");
    put_row(h_[s], pos, h, n_embd);
}

void KvStore::on_rewind(int pos) {
    for (auto & x : k_) x.resize(std::min(x.size(), (size_t) pos * row_size_));
    for (auto & x : v_) x.resize(std::min(x.size(), (size_t) pos * row_size_));
    for (auto & x : h_) x.resize(std::min(x.size(), (size_t) pos * n_embd_));
}

}  // namespace kvlens
