// Layer selections: "all", "last:N", "lastN", "0,3,5", "2-5".
#include <algorithm>
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "kvlens/error.h"
#include "kvlens/tap.h"

namespace kvlens {
namespace {
int parse_int(const std::string & s, const std::string & spec) {
    if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit((unsigned char) c) || c == '-'; }))
        throw Error("invalid layer selection '" + spec + "' (use all, last:N or a list like 0,3,5 or 2-5)");
    try {
        return std::stoi(s);
    } catch (...) {
        throw Error("invalid layer selection '" + spec + "'");
    }
}
}  // namespace

std::vector<int> parse_layers(const std::string & spec_in, int n_layer) {
    std::string spec;
    for (char c : spec_in) if (!std::isspace((unsigned char) c)) spec += c;
    std::vector<int> out;
    if (spec == "all") {
        for (int i = 0; i < n_layer; ++i) out.push_back(i);
        return out;
    }
    if (spec.rfind("last", 0) == 0) {
        std::string n = spec.substr(4);
        if (!n.empty() && n[0] == ':') n = n.substr(1);
        int k = parse_int(n, spec_in);
        if (k < 1 || k > n_layer)
            throw Error("layer selection '" + spec_in + "': N must be in 1.." + std::to_string(n_layer));
        for (int i = n_layer - k; i < n_layer; ++i) out.push_back(i);
        return out;
    }
    std::stringstream ss(spec);
    std::string item;
    while (std::getline(ss, item, ',')) {
        size_t dash = item.find('-', 1);
        int a, b;
        if (dash != std::string::npos) {
            a = parse_int(item.substr(0, dash), spec_in);
            b = parse_int(item.substr(dash + 1), spec_in);
        } else {
            a = b = parse_int(item, spec_in);
        }
        if (a > b) throw Error("layer range '" + item + "' is reversed");
        for (int i = a; i <= b; ++i) {
            if (i < 0 || i >= n_layer)
                throw Error("layer " + std::to_string(i) + " out of range: the model has layers 0.." +
                            std::to_string(n_layer - 1));
            if (std::find(out.begin(), out.end(), i) != out.end())
                throw Error("layer " + std::to_string(i) + " is listed twice in '" + spec_in + "'");
            out.push_back(i);
        }
    }
    if (out.empty()) throw Error("empty layer selection");
    std::sort(out.begin(), out.end());
    return out;
}

TapSpec tap_union(const TapSpec & a, const TapSpec & b) {
    if (a.layers.empty()) return b;
    if (b.layers.empty() && !b.hidden_embedding) return a;
    TapSpec u;
    u.layers = a.layers;
    u.layers.insert(u.layers.end(), b.layers.begin(), b.layers.end());
    std::sort(u.layers.begin(), u.layers.end());
    u.layers.erase(std::unique(u.layers.begin(), u.layers.end()), u.layers.end());
    u.kv = (a.kv && !a.layers.empty()) || (b.kv && !b.layers.empty());
    u.hidden = (a.hidden && !a.layers.empty()) || (b.hidden && !b.layers.empty());
    u.hidden_embedding = a.hidden_embedding || b.hidden_embedding;
    return u;
}

}  // namespace kvlens
