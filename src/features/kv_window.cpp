// KvWindow: ring buffer of the last seq_len K/V rows of chosen layers, pooled the paper's way on demand.
#include "kvlens/window.h"

#include <algorithm>
#include <sstream>

#include "kvlens/error.h"

namespace kvlens {

void WindowConfig::set(const std::string & knob, const std::string & value) {
    if (knob == "seq-len" || knob == "seq_len") {
        try {
            size_t used = 0;
            int n = std::stoi(value, &used);
            if (used != value.size()) throw Error("");
            seq_len = n;
        } catch (...) {
            throw Error("--seq-len wants a positive integer, got '" + value + "'");
        }
    } else if (knob == "layers") {
        layers = value;
    } else if (knob == "kv-part" || knob == "kv_part") {
        kv_part = parse_kv_part(value);
    } else if (knob == "pos") {
        pos_agg = parse_pos_agg(value);
    } else if (knob == "heads") {
        head_agg = parse_head_agg(value);
    } else if (knob == "layer-agg" || knob == "layer_agg") {
        layer_agg = parse_layer_agg(value);
    } else if (knob == "source") {
        source = parse_source(value);
        if (source == EmbedSource::Random) throw Error("window source: kv or hidden");
    } else {
        throw Error("unknown window knob '" + knob + "' (seq-len, layers, kv-part, pos, heads, layer-agg, source)");
    }
    validate();
}

void WindowConfig::validate() const {
    if (seq_len <= 0) throw Error("--seq-len must be positive");
    if (pos_agg != PosAgg::Sum && pos_agg != PosAgg::Mean) throw Error("window pooling over positions: sum or mean");
    if (layer_agg == LayerAgg::Last) throw Error("window layer aggregation: mean, sum or flatten");
}

std::string WindowConfig::describe() const {
    std::ostringstream o;
    o << "seq_len=" << seq_len << " layers=" << layers << " kv_part=" << to_string(kv_part)
      << " pos=" << to_string(pos_agg) << " heads=" << to_string(head_agg) << " layer_agg=" << to_string(layer_agg);
    if (source != EmbedSource::Kv) o << " source=" << to_string(source);
    return o.str();
}

WindowConfig WindowConfig::parse(const std::string & d) {
    WindowConfig c;
    std::istringstream in(d);
    std::string kv;
    while (in >> kv) {
        auto eq = kv.find('=');
        if (eq == std::string::npos) throw Error("bad window description '" + d + "'");
        c.set(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return c;
}

PoolConfig WindowConfig::pool_config() const {
    PoolConfig p;
    p.source = source;
    p.kv_part = kv_part;
    p.pos_agg = pos_agg;
    p.head_agg = head_agg;
    p.layers = layers;
    p.layer_agg = layer_agg;
    p.normalize = Normalize::None;
    return p;
}

KvWindow::KvWindow(const WindowConfig & cfg, const PoolShape & shape, std::vector<int> layers)
    : cfg_(cfg), shape_(shape), layers_(std::move(layers)) {
    cfg_.validate();
    if (layers_.empty()) throw Error("KvWindow: no layers chosen");
    if (cfg_.source == EmbedSource::Hidden && shape_.n_embd <= 0) throw Error("KvWindow: hidden-state window without n_embd");
    rows_.assign(layers_.size(), std::vector<float>((size_t) cfg_.seq_len * entry()));
    pos_.assign(layers_.size(), std::vector<int>(cfg_.seq_len, -1));
    next_.assign(layers_.size(), 0);
}

void KvWindow::reset() {
    for (auto & p : pos_) std::fill(p.begin(), p.end(), -1);
    std::fill(next_.begin(), next_.end(), 0);
}

int KvWindow::entry() const { return cfg_.source == EmbedSource::Hidden ? shape_.n_embd : 2 * shape_.row_size(); }

int window_hidden_layer(int layer) { return layer == 0 ? kEmbeddingLayer : layer - 1; }

TapSpec window_tap_spec(const WindowConfig & cfg, const std::vector<int> & layers) {
    TapSpec t;
    if (cfg.source != EmbedSource::Hidden) {
        t.layers = layers;
        return t;
    }
    t.kv = false;
    t.hidden = true;
    for (int l : layers) {
        if (l == 0) t.hidden_embedding = true;
        else t.layers.push_back(l - 1);
    }
    if (t.layers.empty()) t.hidden = false;
    return t;
}

void KvWindow::put(int slot, int pos, const float * a, const float * b, int n) {
    const int e = pos % cfg_.seq_len;
    float * dst = rows_[slot].data() + (size_t) e * entry();
    std::copy(a, a + n, dst);
    if (b) std::copy(b, b + n, dst + n);
    pos_[slot][e] = pos;
    next_[slot] = std::max(next_[slot], pos + 1);
}

void KvWindow::on_kv(int layer, int pos, const float * k, const float * v, int row_size) {
    if (cfg_.source != EmbedSource::Kv) return;
    auto it = std::find(layers_.begin(), layers_.end(), layer);
    if (it == layers_.end()) return;
    if (row_size != shape_.row_size())
        throw Error("KvWindow: row of " + std::to_string(row_size) + " floats, expected " + std::to_string(shape_.row_size()));
    put(int(it - layers_.begin()), pos, k, v, row_size);
}

void KvWindow::on_hidden(int layer, int pos, const float * h, int n_embd) {
    if (cfg_.source != EmbedSource::Hidden) return;
    auto it = std::find_if(layers_.begin(), layers_.end(), [&](int l) { return window_hidden_layer(l) == layer; });
    if (it == layers_.end()) return;
    if (n_embd != shape_.n_embd)
        throw Error("KvWindow: hidden row of " + std::to_string(n_embd) + " floats, expected " + std::to_string(shape_.n_embd));
    put(int(it - layers_.begin()), pos, h, nullptr, n_embd);
}

void KvWindow::on_rewind(int pos) {
    for (size_t s = 0; s < layers_.size(); ++s) {
        for (int & p : pos_[s]) if (p >= pos) p = -1;
        next_[s] = std::min(next_[s], pos);
    }
}

int KvWindow::end() const { return *std::min_element(next_.begin(), next_.end()); }

bool KvWindow::has(int slot, int pos) const { return pos >= 0 && pos_[slot][pos % cfg_.seq_len] == pos; }

int KvWindow::n_window(int end) const {
    int n = 0;
    for (int p = std::max(start_, end - cfg_.seq_len); p < end; ++p) {
        bool all = true;
        for (size_t s = 0; s < layers_.size() && all; ++s) all = has((int) s, p);
        n += all;
    }
    return n;
}

int KvWindow::dim() const { return pooled_dim(cfg_.pool_config(), shape_, (int) layers_.size()); }

std::vector<float> KvWindow::features(int end) const {
    const bool hid = cfg_.source == EmbedSource::Hidden;
    const int row = shape_.row_size();
    const bool kv = cfg_.kv_part == KvPart::KV;
    const int width = hid ? shape_.n_embd : kv ? 2 * row : row;
    const int off = !hid && cfg_.kv_part == KvPart::V ? row : 0;  // where the chosen part starts in [K][V]
    std::vector<int> real;
    for (int p = std::max(start_, end - cfg_.seq_len); p < end; ++p) {
        bool all = true;
        for (size_t s = 0; s < layers_.size() && all; ++s) all = has((int) s, p);
        if (all) real.push_back(p);
    }
    if (real.empty()) throw Error("KvWindow: the window ending at position " + std::to_string(end) + " holds no token");
    std::vector<std::vector<double>> sums(layers_.size(), std::vector<double>(width, 0.0));
    for (size_t s = 0; s < layers_.size(); ++s) {
        for (int p : real) {
            const float * src = rows_[s].data() + (size_t) (p % cfg_.seq_len) * entry() + off;
            for (int i = 0; i < width; ++i) sums[s][i] += src[i];
        }
        if (cfg_.pos_agg == PosAgg::Mean)
            for (double & x : sums[s]) x /= (double) real.size();
    }
    return finish_pooled(cfg_.pool_config(), shape_, sums);
}

std::vector<float> window_reference(const KvStore & store, const WindowConfig & cfg, const PoolShape & shape,
                                    const std::vector<int> & layers, int end, int start) {
    return pool_rows(store, cfg.pool_config(), shape, layers, std::max(start, end - cfg.seq_len), end);
}

}  // namespace kvlens
