// Pooling of K/V (or hidden) rows into one vector per text: config parsing, streaming pooler, reference.
#include "kvlens/pooling.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "kvlens/error.h"
#include "kvlens/hash.h"

namespace kvlens {

namespace {

template <typename E, size_t N>
E parse_enum(const std::string & s, const char * knob, const std::pair<const char *, E> (&table)[N]) {
    for (auto & [name, v] : table) {
        if (s == name) return v;
    }
    std::string ok;
    for (auto & [name, v] : table) ok += std::string(ok.empty() ? "" : "|") + name;
    throw Error("unknown " + std::string(knob) + " '" + s + "' (expected " + ok + ")");
}

template <typename E, size_t N>
const char * enum_name(E v, const std::pair<const char *, E> (&table)[N]) {
    for (auto & [name, e] : table) {
        if (e == v) return name;
    }
    return "?";
}

const std::pair<const char *, KvPart> kKvPart[] = {{"k", KvPart::K}, {"v", KvPart::V}, {"kv", KvPart::KV}};
const std::pair<const char *, PosAgg> kPosAgg[] = {
    {"mean", PosAgg::Mean}, {"sum", PosAgg::Sum}, {"last", PosAgg::Last}, {"first", PosAgg::First}};
const std::pair<const char *, HeadAgg> kHeadAgg[] = {{"mean", HeadAgg::Mean}, {"flatten", HeadAgg::Flatten}};
const std::pair<const char *, LayerAgg> kLayerAgg[] = {
    {"mean", LayerAgg::Mean}, {"sum", LayerAgg::Sum}, {"last", LayerAgg::Last}, {"flatten", LayerAgg::Flatten}};
const std::pair<const char *, Normalize> kNorm[] = {{"l2", Normalize::L2}, {"none", Normalize::None}};
const std::pair<const char *, EmbedSource> kSource[] = {
    {"kv", EmbedSource::Kv}, {"hidden", EmbedSource::Hidden}, {"random", EmbedSource::Random}};

bool is_hidden(const PoolConfig & cfg) { return cfg.source == EmbedSource::Hidden; }

// Parts stored per layer and the width of one part (before head aggregation).
int n_parts(const PoolConfig & cfg) { return !is_hidden(cfg) && cfg.kv_part == KvPart::KV ? 2 : 1; }
int part_width(const PoolConfig & cfg, const PoolShape & s) { return is_hidden(cfg) ? s.n_embd : s.row_size(); }
// Width of one part after head aggregation.
int part_out(const PoolConfig & cfg, const PoolShape & s) {
    if (is_hidden(cfg)) return s.n_embd;
    return cfg.head_agg == HeadAgg::Mean ? s.head_dim : s.row_size();
}

}  // namespace

KvPart parse_kv_part(const std::string & s) { return parse_enum(s, "--kv-part", kKvPart); }
PosAgg parse_pos_agg(const std::string & s) { return parse_enum(s, "--pos", kPosAgg); }
HeadAgg parse_head_agg(const std::string & s) { return parse_enum(s, "--heads", kHeadAgg); }
LayerAgg parse_layer_agg(const std::string & s) { return parse_enum(s, "--layer-agg", kLayerAgg); }
Normalize parse_normalize(const std::string & s) { return parse_enum(s, "--normalize", kNorm); }
EmbedSource parse_source(const std::string & s) { return parse_enum(s, "--source", kSource); }
const char * to_string(KvPart v) { return enum_name(v, kKvPart); }
const char * to_string(PosAgg v) { return enum_name(v, kPosAgg); }
const char * to_string(HeadAgg v) { return enum_name(v, kHeadAgg); }
const char * to_string(LayerAgg v) { return enum_name(v, kLayerAgg); }
const char * to_string(Normalize v) { return enum_name(v, kNorm); }
const char * to_string(EmbedSource v) { return enum_name(v, kSource); }

std::vector<std::string> PoolConfig::preset_names() { return {"paper"}; }

PoolConfig PoolConfig::preset(const std::string & name) {
    if (name == "paper") return PoolConfig{};  // the defaults are the paper's configuration
    throw Error("unknown preset '" + name + "' (expected paper)");
}

void PoolConfig::set(const std::string & knob, const std::string & value) {
    if (knob == "kv-part") kv_part = parse_kv_part(value);
    else if (knob == "pos") pos_agg = parse_pos_agg(value);
    else if (knob == "heads") head_agg = parse_head_agg(value);
    else if (knob == "layer-agg") layer_agg = parse_layer_agg(value);
    else if (knob == "normalize") normalize = parse_normalize(value);
    else if (knob == "source") source = parse_source(value);
    else if (knob == "layers") {
        if (value.empty()) throw Error("empty --layers (expected last:N, i,j,k or all)");
        layers = value;
    } else {
        throw Error("unknown pooling knob '" + knob + "'");
    }
}

const std::vector<PoolConfig::Knob> & PoolConfig::knobs() {
    static const std::vector<Knob> k = {
        {"kv-part", "k | v | kv (K and V concatenated inside each layer)"},
        {"pos", "token aggregation: mean | sum | last | first"},
        {"heads", "kv-head aggregation: mean | flatten"},
        {"layers", "layers: last:N | i,j,k | a-b | all"},
        {"layer-agg", "layer aggregation: mean | sum | last | flatten"},
        {"normalize", "l2 | none"},
        {"source", "kv | hidden (same pooling over hidden states) | random (seeded Gaussian, KV dimension)"}};
    return k;
}

PoolConfig PoolConfig::from_knobs(const std::string & preset_name, const std::map<std::string, std::string> & values) {
    PoolConfig c = preset(preset_name);
    for (auto & [k, v] : values) {
        if (!v.empty()) c.set(k, v);
    }
    return c;
}

std::string PoolConfig::describe() const {
    std::ostringstream o;
    o << "source=" << to_string(source) << " kv_part=" << to_string(kv_part) << " pos=" << to_string(pos_agg)
      << " heads=" << to_string(head_agg) << " layers=" << layers << " layer_agg=" << to_string(layer_agg)
      << " norm=" << to_string(normalize);
    if (source == EmbedSource::Random) o << " seed=" << seed;
    return o.str();
}

int pooled_dim(const PoolConfig & cfg, const PoolShape & shape, int n_layers_selected) {
    if (n_layers_selected <= 0) throw Error("pooling needs at least one layer");
    PoolConfig c = cfg;
    if (c.source == EmbedSource::Random) c.source = EmbedSource::Kv;  // random mirrors the KV dimension
    int per_layer = n_parts(c) * part_out(c, shape);
    return c.layer_agg == LayerAgg::Flatten ? per_layer * n_layers_selected : per_layer;
}

TapSpec pool_tap_spec(const PoolConfig & cfg, const std::vector<int> & layers) {
    TapSpec t;
    t.layers = layers;
    t.kv = cfg.source == EmbedSource::Kv;
    t.hidden = cfg.source == EmbedSource::Hidden;
    if (cfg.source == EmbedSource::Random) t.layers.clear();
    return t;
}

void l2_normalize(float * x, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += (double) x[i] * x[i];
    if (s <= 0) return;
    float inv = (float) (1.0 / std::sqrt(s));
    for (int i = 0; i < n; ++i) x[i] *= inv;
}

// ---- streaming pooler ------------------------------------------------------------------------

KvPooler::KvPooler(const PoolConfig & cfg, const PoolShape & shape, std::vector<int> layers)
    : cfg_(cfg), shape_(shape), layers_(std::move(layers)) {
    if (cfg_.source == EmbedSource::Random) throw Error("KvPooler: source=random needs no pooler");
    if (layers_.empty()) throw Error("KvPooler: no layers selected");
    if (is_hidden(cfg_) ? shape_.n_embd <= 0 : (shape_.n_head_kv <= 0 || shape_.head_dim <= 0)) {
        throw Error("KvPooler: bad shape");
    }
    size_t w = (size_t) n_parts(cfg_) * part_width(cfg_, shape_);
    slots_.resize(layers_.size());
    for (auto & s : slots_) {
        if (cfg_.pos_agg == PosAgg::Mean || cfg_.pos_agg == PosAgg::Sum) s.sum.assign(w, 0.0);
        else if (cfg_.pos_agg == PosAgg::First) s.first.assign(w, 0.f);
        else s.last.assign(w, 0.f);
    }
}

int KvPooler::slot_of(int layer) const {
    for (size_t i = 0; i < layers_.size(); ++i) {
        if (layers_[i] == layer) return (int) i;
    }
    return -1;
}

void KvPooler::set_range(int start, int end) {
    start_ = start;
    end_ = end;
}

void KvPooler::reset() {
    for (auto & s : slots_) {
        std::fill(s.sum.begin(), s.sum.end(), 0.0);
        s.n = 0;
        s.last_pos = -1;
    }
    broken_ = false;
}

void KvPooler::add(int slot, int pos, const float * a, const float * b, int wa, int wb) {
    if (pos < start_ || (end_ >= 0 && pos >= end_)) return;
    Slot & s = slots_[slot];
    if (pos <= s.last_pos) {  // a position written twice without a rewind: the sums would double count
        broken_ = true;
        return;
    }
    s.last_pos = pos;
    switch (cfg_.pos_agg) {
        case PosAgg::Mean:
        case PosAgg::Sum:
            for (int i = 0; i < wa; ++i) s.sum[i] += a[i];
            for (int i = 0; i < wb; ++i) s.sum[wa + i] += b[i];
            break;
        case PosAgg::First:
            if (s.n == 0) {
                std::copy(a, a + wa, s.first.begin());
                if (wb) std::copy(b, b + wb, s.first.begin() + wa);
            }
            break;
        case PosAgg::Last:
            std::copy(a, a + wa, s.last.begin());
            if (wb) std::copy(b, b + wb, s.last.begin() + wa);
            break;
    }
    s.n++;
}

void KvPooler::on_kv(int layer, int pos, const float * k, const float * v, int row_size) {
    if (is_hidden(cfg_)) return;
    int slot = slot_of(layer);
    if (slot < 0) return;
    if (row_size != shape_.row_size()) {
        broken_ = true;
        return;
    }
    switch (cfg_.kv_part) {
        case KvPart::K: add(slot, pos, k, nullptr, row_size, 0); break;
        case KvPart::V: add(slot, pos, v, nullptr, row_size, 0); break;
        case KvPart::KV: add(slot, pos, k, v, row_size, row_size); break;
    }
}

void KvPooler::on_hidden(int layer, int pos, const float * h, int n_embd) {
    if (!is_hidden(cfg_)) return;
    int slot = slot_of(layer);
    if (slot < 0) return;
    if (n_embd != shape_.n_embd) {
        broken_ = true;
        return;
    }
    add(slot, pos, h, nullptr, n_embd, 0);
}

void KvPooler::on_rewind(int pos) {
    if (pos <= start_) {
        reset();
        return;
    }
    for (auto & s : slots_) {
        if (s.last_pos >= pos) broken_ = true;
    }
}

int KvPooler::dim() const { return pooled_dim(cfg_, shape_, (int) layers_.size()); }

std::vector<float> KvPooler::result() const {
    std::vector<float> out(dim());
    result(out.data());
    return out;
}

void KvPooler::result(float * out) const {
    if (broken_) throw Error("pooler: rows arrived out of order or with the wrong width (rewind inside the pooled range?)");
    std::vector<std::vector<double>> rows(slots_.size());
    for (size_t i = 0; i < slots_.size(); ++i) {
        const Slot & s = slots_[i];
        if (s.n == 0) throw Error("pooler: layer " + std::to_string(layers_[i]) + " saw no token to pool");
        switch (cfg_.pos_agg) {
            case PosAgg::Mean:
                rows[i].resize(s.sum.size());
                for (size_t j = 0; j < s.sum.size(); ++j) rows[i][j] = s.sum[j] / s.n;
                break;
            case PosAgg::Sum: rows[i] = s.sum; break;
            case PosAgg::First: rows[i].assign(s.first.begin(), s.first.end()); break;
            case PosAgg::Last: rows[i].assign(s.last.begin(), s.last.end()); break;
        }
    }
    std::vector<float> v = finish_pooled(cfg_, shape_, rows);
    std::copy(v.begin(), v.end(), out);
}

std::vector<float> finish_pooled(const PoolConfig & cfg, const PoolShape & shape,
                                 const std::vector<std::vector<double>> & rows) {
    const int np = n_parts(cfg), pw = part_width(cfg, shape), po = part_out(cfg, shape);
    const int per_layer = np * po;
    const bool head_mean = !is_hidden(cfg) && cfg.head_agg == HeadAgg::Mean;
    // per-layer vectors after head aggregation
    std::vector<std::vector<double>> lay(rows.size(), std::vector<double>(per_layer, 0.0));
    for (size_t l = 0; l < rows.size(); ++l) {
        for (int p = 0; p < np; ++p) {
            const double * src = rows[l].data() + (size_t) p * pw;
            double * dst = lay[l].data() + (size_t) p * po;
            if (!head_mean) {
                std::copy(src, src + pw, dst);
                continue;
            }
            for (int h = 0; h < shape.n_head_kv; ++h) {
                for (int d = 0; d < shape.head_dim; ++d) dst[d] += src[h * shape.head_dim + d];
            }
            for (int d = 0; d < shape.head_dim; ++d) dst[d] /= shape.n_head_kv;
        }
    }
    std::vector<double> acc;
    switch (cfg.layer_agg) {
        case LayerAgg::Flatten:
            for (auto & v : lay) acc.insert(acc.end(), v.begin(), v.end());
            break;
        case LayerAgg::Last: acc = lay.back(); break;
        case LayerAgg::Mean:
        case LayerAgg::Sum:
            acc.assign(per_layer, 0.0);
            for (auto & v : lay) {
                for (int i = 0; i < per_layer; ++i) acc[i] += v[i];
            }
            if (cfg.layer_agg == LayerAgg::Mean) {
                for (auto & x : acc) x /= (double) lay.size();
            }
            break;
    }
    std::vector<float> out(acc.begin(), acc.end());
    if (cfg.normalize == Normalize::L2) l2_normalize(out.data(), (int) out.size());
    return out;
}

// ---- plain reference on stored rows -----------------------------------------------------------

std::vector<float> pool_rows(const KvStore & store, const PoolConfig & cfg, const PoolShape & shape,
                             const std::vector<int> & layers, int start, int end) {
    if (cfg.source == EmbedSource::Random) throw Error("pool_rows: source=random has no rows");
    const bool hidden = is_hidden(cfg);
    const int po = part_out(cfg, shape), np = n_parts(cfg);
    std::vector<std::vector<double>> per_layer;  // one vector per chosen layer: [part][po]
    for (int layer : layers) {
        int slot = store.slot(layer);
        if (slot < 0) throw Error("pool_rows: layer " + std::to_string(layer) + " not in the store");
        int n_pos = hidden ? store.n_hidden_pos(slot) : store.n_pos(slot);
        int hi = end < 0 ? n_pos : std::min(end, n_pos);
        if (hi <= start) throw Error("pool_rows: no position in range for layer " + std::to_string(layer));
        // head-aggregate every row first
        std::vector<std::vector<double>> tok;
        for (int pos = start; pos < hi; ++pos) {
            std::vector<double> r;
            for (int p = 0; p < np; ++p) {
                const float * row = hidden ? store.hidden(slot, pos)
                                   : (cfg.kv_part == KvPart::V || p == 1) ? store.v(slot, pos)
                                                                          : store.k(slot, pos);
                if (hidden || cfg.head_agg == HeadAgg::Flatten) {
                    r.insert(r.end(), row, row + po);
                    continue;
                }
                for (int d = 0; d < shape.head_dim; ++d) {
                    double s = 0;
                    for (int h = 0; h < shape.n_head_kv; ++h) s += row[h * shape.head_dim + d];
                    r.push_back(s / shape.n_head_kv);
                }
            }
            tok.push_back(std::move(r));
        }
        std::vector<double> v(tok[0].size(), 0.0);
        if (cfg.pos_agg == PosAgg::First) v = tok.front();
        else if (cfg.pos_agg == PosAgg::Last) v = tok.back();
        else {
            for (auto & r : tok) {
                for (size_t i = 0; i < v.size(); ++i) v[i] += r[i];
            }
            if (cfg.pos_agg == PosAgg::Mean) {
                for (auto & x : v) x /= (double) tok.size();
            }
        }
        per_layer.push_back(std::move(v));
    }
    std::vector<float> out;
    if (cfg.layer_agg == LayerAgg::Flatten) {
        for (auto & v : per_layer) out.insert(out.end(), v.begin(), v.end());
    } else if (cfg.layer_agg == LayerAgg::Last) {
        out.assign(per_layer.back().begin(), per_layer.back().end());
    } else {
        for (size_t i = 0; i < per_layer[0].size(); ++i) {
            double s = 0;
            for (auto & v : per_layer) s += v[i];
            out.push_back((float) (cfg.layer_agg == LayerAgg::Mean ? s / per_layer.size() : s));
        }
    }
    if (cfg.normalize == Normalize::L2) l2_normalize(out.data(), (int) out.size());
    return out;
}

std::vector<float> random_embedding(const PoolConfig & cfg, int dim, const std::string & text) {
    std::mt19937_64 rng(cfg.seed ^ fnv1a(text));
    std::normal_distribution<float> gauss(0.f, 1.f);
    std::vector<float> v(dim);
    for (auto & x : v) x = gauss(rng);
    if (cfg.normalize == Normalize::L2) l2_normalize(v.data(), dim);
    return v;
}

}  // namespace kvlens
