#include "run_signature.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "kvlens/error.h"
#include "kvlens/hash.h"

namespace kvlens::cli {

RunSignature & RunSignature::add(const std::string & key, const std::string & value) {
    std::string v = value;
    for (char & c : v)
        if (c == ';' || c == '=' || c == '\n') c = '_';  // keep the text splittable
    kv.emplace_back(key, v);
    return *this;
}

std::string RunSignature::str() const {
    std::string s;
    for (auto & [k, v] : kv) s += (s.empty() ? "" : ";") + k + "=" + v;
    return s;
}

void RunSignature::check(const std::string & stored, const std::string & out_path) const {
    if (stored == str()) return;
    if (stored.empty())
        throw Error(out_path + " holds records without a run signature (an older kvlens, or another tool): use another -o");
    std::map<std::string, std::string> old;
    size_t p = 0;
    while (p <= stored.size()) {
        size_t e = stored.find(';', p);
        if (e == std::string::npos) e = stored.size();
        const std::string item = stored.substr(p, e - p);
        const size_t eq = item.find('=');
        if (eq != std::string::npos) old[item.substr(0, eq)] = item.substr(eq + 1);
        p = e + 1;
    }
    for (auto & [k, v] : kv) {
        auto it = old.find(k);
        const std::string was = it == old.end() ? "(unset)" : it->second;
        if (was != v)
            throw Error(out_path + " was written with other settings (" + k + " " + was + ", now " + v +
                        "): resuming would mix two runs; use another -o, or the same settings");
    }
    throw Error(out_path + " was written with other settings: resuming would mix two runs; use another -o");
}

std::string weights_fingerprint(const std::string & path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw Error("cannot read " + path);
    const std::streamoff size = in.tellg();
    const std::streamoff n = std::min<std::streamoff>(size, 1 << 20);
    std::vector<char> buf((size_t) n);
    in.seekg(size - n);
    in.read(buf.data(), n);
    char out[64];
    std::snprintf(out, sizeof out, "%lld:%016llx", (long long) size,
                  (unsigned long long) fnv1a(std::string_view(buf.data(), buf.size())));
    return out;
}

std::string text_hash(const std::string & s) {
    char out[24];
    std::snprintf(out, sizeof out, "%016llx", (unsigned long long) fnv1a(s));
    return out;
}

}  // namespace kvlens::cli
