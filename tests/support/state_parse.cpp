#include "state_parse.h"

#include <cstring>

namespace kvlens::test {
namespace {
struct Reader {
    const std::vector<uint8_t> & d;
    size_t p = 0;
    bool ok = true;
    template <class T> T get() {
        T v{};
        if (p + sizeof(T) > d.size()) { ok = false; return v; }
        std::memcpy(&v, d.data() + p, sizeof(T));
        p += sizeof(T);
        return v;
    }
    void floats(std::vector<float> & out, size_t n) {
        if (p + n * 4 > d.size()) { ok = false; return; }
        size_t o = out.size();
        out.resize(o + n);
        std::memcpy(out.data() + o, d.data() + p, n * 4);
        p += n * 4;
    }
};
// The cells of one stream: positions (and their sequences), then K rows per layer, then V (maybe transposed).
bool parse_stream(Reader & r, uint32_t cells, SeqState & s) {
    for (uint32_t i = 0; i < cells; ++i) {
        s.pos.push_back(r.get<int32_t>());
        uint32_t n_seq = r.get<uint32_t>();
        for (uint32_t j = 0; j < n_seq; ++j) r.get<int32_t>();
    }
    s.v_trans = r.get<uint32_t>() != 0;
    uint32_t n_layer = r.get<uint32_t>();
    s.k.resize(n_layer);
    s.v.resize(n_layer);
    for (uint32_t l = 0; l < n_layer; ++l) {
        if (r.get<int32_t>() != 0) return false;  // GGML_TYPE_F32
        uint64_t row_bytes = r.get<uint64_t>();
        s.row = (int) (row_bytes / 4);
        r.floats(s.k[l], (size_t) cells * s.row);
    }
    for (uint32_t l = 0; l < n_layer; ++l) {
        if (r.get<int32_t>() != 0) return false;
        if (!s.v_trans) {
            r.get<uint64_t>();
            r.floats(s.v[l], (size_t) cells * s.row);
        } else {
            r.get<uint32_t>();                      // element size
            uint32_t n_embd_v = r.get<uint32_t>();  // row width
            std::vector<float> t;
            r.floats(t, (size_t) cells * n_embd_v);  // [j][cell]
            s.v[l].resize((size_t) cells * n_embd_v);
            for (uint32_t j = 0; j < n_embd_v; ++j)
                for (uint32_t c = 0; c < cells; ++c) s.v[l][(size_t) c * n_embd_v + j] = t[(size_t) j * cells + c];
        }
    }
    return r.ok;
}

}  // namespace

bool parse_seq_state(const std::vector<uint8_t> & data, SeqState & s) {
    Reader r{data};
    if (r.get<uint32_t>() != 0xaf143cd8u) return false;
    r.get<int32_t>();  // seq_id
    // one stream (unified cache) or one per sequence (kv_unified = false): the empty ones are a zero cell count
    const uint32_t n_stream = r.get<uint32_t>();
    if (n_stream < 1 || n_stream > 256) return false;
    int filled = 0;
    for (uint32_t st = 0; st < n_stream && r.ok; ++st) {
        const uint32_t cells = r.get<uint32_t>();
        if (cells == 0) continue;
        if (++filled > 1) return false;  // one sequence lives in one stream
        if (!parse_stream(r, cells, s)) return false;
    }
    return r.ok && r.p == data.size();
}

}  // namespace kvlens::test
