// read_prep_records (src/decisions/probe_records.cpp): probe prep's JSONL as probe train reads it back.
// Byte 0 picks the options (variant, switch-aware, short cutoff); the rest is the file.
#include <cstdint>
#include <cstdlib>
#include <sstream>

#include "kvlens/error.h"
#include "kvlens/probe_records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    if (size == 0) return 0;
    PrepReadOptions o;
    o.variant = data[0] % 3 == 0 ? "chat" : data[0] % 3 == 1 ? "raw" : "both";
    o.switch_aware = data[0] & 4;
    o.short_cutoff = data[0] & 8 ? 16 : -1;
    std::istringstream in(std::string(reinterpret_cast<const char *>(data) + 1, size - 1));
    PrepData d;
    try {
        read_prep_records(in, "fuzz", o, d);
        // what probe train relies on: rows of one width, labels among the paper's four
        for (const PrepExample & e : d.ex) {
            if (e.x.size() != d.ex[0].x.size()) std::abort();
            if (e.y != 0 && e.y != 25 && e.y != 75 && e.y != 100) std::abort();
        }
    } catch (const Error &) {
    }
    return 0;
}
