#include "kvlens/probe_records.h"

#include <cmath>

#include "kvlens/arith.h"
#include "kvlens/error.h"

namespace kvlens {

using json = nlohmann::ordered_json;

namespace {

struct Where {
    const std::string & name;
    int line;
    [[noreturn]] void fail(const std::string & what) const {
        throw Error(name + ":" + std::to_string(line) + ": " + what);
    }
};

const json & member(const json & j, const char * k, const Where & w, const char * ctx) {
    if (!j.is_object() || !j.contains(k)) w.fail(std::string(ctx) + " has no '" + k + "'");
    return j[k];
}
bool get_bool(const json & j, const char * k, const Where & w, const char * ctx) {
    const json & v = member(j, k, w, ctx);
    if (!v.is_boolean()) w.fail(std::string(ctx) + "." + k + " must be true or false");
    return v.get<bool>();
}
long long get_int(const json & j, const char * k, const Where & w, const char * ctx, long long lo, long long hi) {
    const json & v = member(j, k, w, ctx);
    if (!(v.is_number_integer() || v.is_number_unsigned()) || v.get<long long>() < lo || v.get<long long>() > hi)
        w.fail(std::string(ctx) + "." + k + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v.get<long long>();
}
std::vector<float> features(const json & v, const Where & w, const std::string & what) {
    if (!v.is_array() || v.empty()) w.fail(what + ": no features (prep ran with --no-raw?)");
    std::vector<float> x;
    x.reserve(v.size());
    for (auto & e : v) {
        if (!e.is_number() || !std::isfinite(e.get<double>())) w.fail(what + " holds a value that is not a finite number");
        x.push_back(e.get<float>());
    }
    return x;
}

void check_meta(const json & m, const Where & w) {
    if (!m.is_object()) w.fail("'meta' must be an object");
    const json & model = member(m, "model", w, "meta");
    if (!model.is_object() || !model.contains("arch") || !model["arch"].is_string()) w.fail("meta.model.arch must be a string");
    get_int(model, "n_layer", w, "meta.model", 1, 1 << 16);
    get_int(model, "n_head_kv", w, "meta.model", 1, 1 << 16);
    get_int(model, "head_dim", w, "meta.model", 1, 1 << 16);
    if (!member(m, "window", w, "meta").is_string()) w.fail("meta.window must be a string");
    get_int(m, "fast_cap", w, "meta", 1, 1 << 30);
}

}  // namespace

int prep_short_cutoff(const json & meta, const PrepReadOptions & o) {
    return o.short_cutoff >= 0 ? o.short_cutoff : meta["fast_cap"].get<int>() / 2;
}

void read_prep_records(std::istream & in, const std::string & name, const PrepReadOptions & o, PrepData & d) {
    if (o.variant != "chat" && o.variant != "raw" && o.variant != "both") throw Error("--variant: chat, raw or both");
    std::string line;
    int ln = 0;
    json m;  // this file's meta
    while (std::getline(in, line)) {
        ++ln;
        if (line.empty()) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded()) continue;  // a line cut by an interrupted run
        const Where w{name, ln};
        if (!j.is_object()) w.fail("a record must be a JSON object");
        if (j.contains("meta")) {
            check_meta(j["meta"], w);
            m = j["meta"];
            if (!d.meta.is_null() && (m["model"] != d.meta["model"] || m["window"] != d.meta["window"]))
                w.fail("written for another model or window than the first file");
            if (d.meta.is_null()) d.meta = m;
            continue;
        }
        if (m.is_null()) w.fail("no meta line before the records (not probe prep output)");
        const json & fast = member(j, "fast", w, "record");
        const json & slow = member(j, "slow", w, "record");
        const bool fc = get_bool(fast, "correct", w, "fast"), sc = get_bool(slow, "correct", w, "slow");
        const int fn = (int) get_int(fast, "n", w, "fast", 0, 1 << 30);
        const int lab = paper_label(fc, fn, sc, prep_short_cutoff(m, o));
        const int group = ++d.groups;
        auto push = [&](std::vector<float> x, float y) {
            if (!d.ex.empty() && x.size() != d.ex[0].x.size())
                w.fail("features of " + std::to_string(x.size()) + " values, the first row had " +
                       std::to_string(d.ex[0].x.size()));
            d.ex.push_back({std::move(x), y, group});
            ++d.labels[(int) y];
        };
        if (o.variant != "raw") push(features(member(j, "x_chat", w, "record"), w, "x_chat"), (float) lab);
        if (o.variant != "chat") push(features(member(j, "x_raw", w, "record"), w, "x_raw"), (float) lab);
        if (o.switch_aware) {
            const json & cuts = member(j, "switch", w, "record");
            if (!cuts.is_array()) w.fail("'switch' must be an array");
            for (auto & c : cuts) push(features(member(c, "x", w, "switch"), w, "switch.x"), get_bool(c, "correct", w, "switch") ? 0.0f : 100.0f);
        }
    }
}

}  // namespace kvlens
