// kvlens serve's text pieces (tools/kvlens/serve_text.h): StopMatcher and ReasoningSplitter. Besides no crash:
// text pushed in pieces gives the same result as pushed whole (the streamed deltas concatenate to the reply).
// Input: "stop1\nstop2\ntext"; bytes 0x01 in text are the cut points between pushes.
#include <cstdint>
#include <cstdlib>

#include "fuzz_util.h"
#include "serve_text.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens::serve;
    auto parts = kvlens::fuzz::split(data, size, 3);
    while (parts.size() < 3) parts.insert(parts.begin(), std::string());
    std::vector<std::string> pieces(1);
    for (char c : parts[2]) {
        if (c == '\x01') pieces.emplace_back();
        else pieces.back() += c;
    }
    std::string whole;
    for (auto & p : pieces) whole += p;

    StopMatcher a({parts[0], parts[1]}), b({parts[0], parts[1]});
    std::string sa, sb = b.push(whole);
    for (auto & p : pieces) sa += a.push(p);
    if (!a.hit()) sa += a.flush();
    if (!b.hit()) sb += b.flush();
    if (sa != sb || a.hit() != b.hit()) std::abort();

    const std::string open = parts[0].empty() ? "<think>" : parts[0], close = parts[1].empty() ? "</think>" : parts[1];
    ReasoningSplitter x(open, close), y(open, close);
    std::string rx, cx, ry, cy;
    for (auto & p : pieces) x.push(p, &rx, &cx);
    x.finish(&rx, &cx);
    y.push(whole, &ry, &cy);
    y.finish(&ry, &cy);
    if (rx != ry || cx != cy) std::abort();
    return 0;
}
