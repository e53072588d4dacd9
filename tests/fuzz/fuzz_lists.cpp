// List parsers of flags: layer selections (parse_layers, src/tap/layers.cpp), level lists (arith_parse_levels),
// the pooling / source names (parse_kv_part, ...), and the CLI's number lists (cli::parse_numbers, parse_ints:
// --give-up, --sweep-tau, --npl, --clients), and --rpc endpoint lists (parse_rpc_servers). Input: byte 0 = the model's layer count, the rest the spec.
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "kvlens/arith.h"
#include "kvlens/error.h"
#include "kvlens/pooling.h"
#include "kvlens/rpc.h"
#include "kvlens/tap.h"
#include "validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    if (size < 1) return 0;
    const int n_layer = data[0];
    const std::string spec(reinterpret_cast<const char *>(data + 1), size - 1);
    try {
        std::vector<int> l = parse_layers(spec, n_layer);
        for (size_t i = 0; i < l.size(); ++i)  // the documented result: ascending, unique, in range
            if (l[i] < 0 || l[i] >= n_layer || (i && l[i] <= l[i - 1])) std::abort();
    } catch (const Error &) {
    }
    try {
        (void) arith_parse_levels(spec);
    } catch (const Error &) {
    }
    try { (void) parse_kv_part(spec); } catch (const Error &) {}
    try { (void) parse_pos_agg(spec); } catch (const Error &) {}
    try { (void) parse_head_agg(spec); } catch (const Error &) {}
    try { (void) parse_layer_agg(spec); } catch (const Error &) {}
    try { (void) parse_normalize(spec); } catch (const Error &) {}
    try { (void) parse_source(spec); } catch (const Error &) {}
    try {
        for (double d : cli::parse_numbers(spec, "--give-up"))
            if (!std::isfinite(d)) std::abort();  // the documented result: finite numbers only
    } catch (const Error &) {
    }
    try {
        for (int i : cli::parse_ints(spec, "--npl"))
            if (i < 1) std::abort();
    } catch (const Error &) {
    }
    try {
        auto e = parse_rpc_servers(spec);  // the documented result: 1..16 endpoints, ports 1..65535, no duplicates
        if (e.empty() || e.size() > 16) std::abort();
        for (size_t i = 0; i < e.size(); ++i) {
            if (e[i].port < 1 || e[i].port > 65535 || e[i].host.empty()) std::abort();
            for (size_t j = 0; j < i; ++j)
                if (e[j].text() == e[i].text()) std::abort();
        }
    } catch (const Error &) {
    }
    return 0;
}
