#include "shard.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <map>

#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/hash.h"
#include "kvlens/npy.h"

namespace kvlens::cli {

using json = nlohmann::ordered_json;

namespace {

bool parse_count(const std::string & s, long long max, size_t & out) {
    if (s.empty() || s.size() > 12) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    const long long v = std::stoll(s);
    if (v > max) return false;
    out = (size_t) v;
    return true;
}

}  // namespace

Shard parse_shard(const std::string & spec) {
    Shard s;
    const size_t slash = spec.find('/');
    size_t i = 0, n = 0;
    if (slash == std::string::npos || !parse_count(spec.substr(0, slash), 1000000, i) ||
        !parse_count(spec.substr(slash + 1), 1000000, n) || n < 1 || i >= n)
        throw Error("--shard: '" + spec + "' is not I/N with 0 <= I < N and 1 <= N <= 1000000 (e.g. 0/4 .. 3/4)");
    s.i = (int) i;
    s.n = (int) n;
    return s;
}

Shard shard_from(const CLI::App & app, const std::string & spec) {
    return app.count("--shard") ? parse_shard(spec) : Shard{};
}

void add_shard_flag(CLI::App & app, std::string & spec) {
    app.add_option("--shard", spec, "I/N: only the items whose 0-based index is I mod N, into this shard's own output "
                                    "(kvlens merge joins the N outputs into the unsharded one)");
}

void Shard::check_items(size_t items) const {
    if (on() && (size_t) n > items)
        throw Error("--shard " + str() + ": " + std::to_string(n) + " shards for " + std::to_string(items) +
                    " items would leave a shard empty; use at most " + std::to_string(items) + " shards");
}

void Shard::sign(RunSignature & sig, size_t items, const std::string & data_hash) const {
    if (!on()) return;
    sig.add(kShardKeys[0], str()).add(kShardKeys[1], std::to_string(items)).add(kShardKeys[2], data_hash);
}

void Shard::tag(nlohmann::ordered_json & record, size_t index) const {
    if (!on()) return;
    record["shard"] = str();
    record["index"] = index;
}

std::string items_hash(const std::vector<std::string> & parts) {
    uint64_t h = fnv1a("");
    for (const std::string & p : parts) {
        h = fnv1a(p, h);
        h = fnv1a(std::string_view("\x1f", 1), h);  // a separator: ["ab","c"] and ["a","bc"] differ
    }
    return text_hash(std::to_string(parts.size()) + ":" + std::to_string(h));
}

// ---- embedding shards ------------------------------------------------------------------------------------------

namespace {

std::string read_all(const std::string & path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error("cannot read " + path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

bool exists(const std::string & p) {
    struct stat st{};
    return stat(p.c_str(), &st) == 0;
}

}  // namespace

std::string manifest_path(const std::string & data_path) { return data_path + ".shard.json"; }

void write_embed_manifest(const std::string & data_path, const std::string & format, const RunSignature & sig,
                          const std::vector<size_t> & indices, long long tokens, int truncated) {
    const std::string bytes = read_all(data_path);
    json m = {{"kvlens", "embed shard"}, {"format", format}, {"run", sig.str()}, {"bytes", std::to_string(bytes.size())},
              {"hash", text_hash(bytes)}, {"tokens", tokens}, {"truncated", truncated}, {"indices", indices}};
    write_text_atomic(manifest_path(data_path), m.dump() + "\n");
}

// ---- merging ---------------------------------------------------------------------------------------------------

SigKV split_run(const std::string & run) {
    SigKV kv;
    size_t p = 0;
    while (p < run.size()) {
        size_t e = run.find(';', p);
        if (e == std::string::npos) e = run.size();
        const std::string item = run.substr(p, e - p);
        const size_t eq = item.find('=');
        kv.emplace_back(item.substr(0, eq), eq == std::string::npos ? "" : item.substr(eq + 1));
        p = e + 1;
    }
    return kv;
}

std::string first_difference(const SigKV & a, const SigKV & b) {
    std::map<std::string, std::string> mb(b.begin(), b.end()), ma(a.begin(), a.end());
    for (auto & [k, v] : a) {
        auto it = mb.find(k);
        const std::string w = it == mb.end() ? "(unset)" : it->second;
        if (w != v) return k + " (" + v + " vs " + w + ")";
    }
    for (auto & [k, v] : b)
        if (!ma.count(k)) return k + " ((unset) vs " + v + ")";
    return "";
}

namespace {

bool is_shard_key(const std::string & k) {
    for (const char * s : kShardKeys)
        if (k == s) return true;
    return false;
}

std::string join_run(const SigKV & kv) {
    std::string s;
    for (auto & [k, v] : kv) s += (s.empty() ? "" : ";") + k + "=" + v;
    return s;
}

// The lines of a shard file; a last line without its newline is a shard killed mid-write.
std::vector<std::string> read_lines(const std::string & path) {
    const std::string all = read_all(path);
    if (!all.empty() && all.back() != '\n')
        throw Error(path + ": torn last line (the shard was stopped mid-write): rerun that shard (it resumes), then merge");
    std::vector<std::string> lines;
    size_t p = 0;
    while (p < all.size()) {
        const size_t nl = all.find('\n', p);
        lines.push_back(all.substr(p, nl - p));
        p = nl + 1;
    }
    return lines;
}

struct ShardFile {
    std::string path, kind;  // records | prep | embed-npy | embed-jsonl
    Shard shard;
    size_t items = 0;
    SigKV sig;                                         // what every shard of one run shares ("shard" removed)
    std::optional<json> header;                        // prep: the meta line, shard removed
    std::vector<std::pair<size_t, std::string>> rows;  // global index -> the output line (text kinds)
    std::vector<size_t> indices;                       // embed-npy: the rows' global indices, in file order
    std::vector<float> data;
    size_t dim = 0;
    long long tokens = 0;
    int truncated = 0;
};

[[noreturn]] void bad(const std::string & path, const std::string & why) { throw Error(path + ": " + why); }

// A string field, "" when absent or not a string (json::value would throw on another type).
std::string str_field(const json & j, const char * key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Takes "shard" (I/N) out of a signature and returns it; the rest stays for the comparison.
Shard take_shard(SigKV & kv, size_t & items, const std::string & path) {
    Shard s;
    bool have = false, have_items = false;
    items = 0;
    for (auto it = kv.begin(); it != kv.end();) {
        if (it->first == "shard") {
            try {
                s = parse_shard(it->second);
            } catch (const Error &) {
                bad(path, "malformed shard '" + it->second + "' in its run signature");
            }
            have = true;
            it = kv.erase(it);
            continue;
        }
        if (it->first == "shard_items") {
            const std::string & v = it->second;
            have_items = !v.empty() && v.size() < 12 && v.find_first_not_of("0123456789") == std::string::npos;
            if (have_items) items = std::stoul(v);
        }
        ++it;
    }
    if (!have) bad(path, "not a shard output (written without --shard)");
    if (!have_items) bad(path, "a shard signature without its item count");
    return s;
}

size_t index_of(const json & j, const std::string & where) {
    if (!j.contains("index") || !j["index"].is_number_unsigned()) throw Error(where + ": a shard record without its \"index\"");
    return j["index"].get<size_t>();
}

ShardFile read_embed(const std::string & path, const std::string & mpath) {
    ShardFile f;
    f.path = path;
    json m = json::parse(read_all(mpath), nullptr, false);
    if (m.is_discarded() || !m.is_object() || str_field(m, "kvlens") != "embed shard" || !m.contains("run") ||
        !m["run"].is_string() || !m.contains("indices") || !m["indices"].is_array())
        bad(mpath, "not an embed shard manifest");
    f.kind = "embed-" + str_field(m, "format");
    f.sig = split_run(m["run"].get<std::string>());
    f.shard = take_shard(f.sig, f.items, path);
    const std::string bytes = read_all(path);
    if (std::to_string(bytes.size()) != str_field(m, "bytes") || text_hash(bytes) != str_field(m, "hash"))
        bad(path, "does not match its manifest " + mpath + " (rewritten since, or the shard was stopped): rerun that shard");
    for (auto & v : m["indices"]) {
        if (!v.is_number_unsigned()) bad(mpath, "an index that is not a row number");
        f.indices.push_back(v.get<size_t>());
    }
    if (m.contains("tokens") && m["tokens"].is_number_integer()) f.tokens = m["tokens"].get<long long>();
    if (m.contains("truncated") && m["truncated"].is_number_integer()) f.truncated = m["truncated"].get<int>();
    if (f.kind == "embed-npy") {
        std::vector<size_t> shape;
        f.data = read_npy(path, shape);
        if (shape.size() != 2 || shape[0] != f.indices.size()) bad(path, "rows do not match its manifest");
        f.dim = shape[1];
    } else if (f.kind == "embed-jsonl") {
        auto lines = read_lines(path);
        if (lines.size() != f.indices.size()) bad(path, "rows do not match its manifest");
        for (size_t k = 0; k < lines.size(); ++k) {
            json j = json::parse(lines[k], nullptr, false);
            const std::string where = path + ":" + std::to_string(k + 1);
            if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
            if (index_of(j, where) != f.indices[k]) throw Error(where + ": index differs from the manifest's");
            f.rows.emplace_back(f.indices[k], lines[k]);  // already the unsharded line (its "index" is global)
        }
    } else {
        bad(mpath, "unknown format");
    }
    return f;
}

ShardFile read_text(const std::string & path) {
    ShardFile f;
    f.path = path;
    if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npy") == 0)
        bad(path, "no manifest " + manifest_path(path) + " (not an embed --shard output, or the shard did not finish): rerun that shard");
    auto lines = read_lines(path);
    size_t first = 0;
    while (first < lines.size() && lines[first].empty()) ++first;
    if (first == lines.size()) bad(path, "empty (a shard that wrote nothing yet: rerun it; or not a shard output)");
    json h = json::parse(lines[first], nullptr, false);
    if (h.is_discarded() || !h.is_object()) bad(path, "not a JSONL shard output");
    std::string run;
    if (h.contains("meta")) {  // probe prep
        f.kind = "prep";
        if (!h["meta"].is_object() || !h["meta"].contains("shard") || !h["meta"]["shard"].is_object())
            bad(path, "not a shard output (written without --shard)");
        json & sh = h["meta"]["shard"];
        const bool ok = sh.contains("i") && sh["i"].is_number_unsigned() && sh.contains("n") && sh["n"].is_number_unsigned() &&
                        sh.contains("items") && sh["items"].is_number_unsigned();
        if (!ok) bad(path, "malformed shard meta");
        const uint64_t si = sh["i"].get<uint64_t>(), sn = sh["n"].get<uint64_t>();
        if (sn < 1 || sn > 1000000 || si >= sn) bad(path, "malformed shard meta");
        f.shard.i = (int) si;
        f.shard.n = (int) sn;
        f.items = sh["items"].get<size_t>();
        sh.erase("i");
        for (auto & [k, v] : h["meta"].items()) f.sig.emplace_back(k, v.dump());
        h["meta"].erase("shard");
        f.header = h;
        ++first;
    } else {
        f.kind = "records";
        if (h.contains("embedding")) bad(path, "no manifest " + manifest_path(path) + " (not an embed --shard output, or the shard did not finish): rerun that shard");
        if (!h.contains("run") || !h["run"].is_string()) bad(path, "not a shard output (records without a run signature)");
        run = h["run"].get<std::string>();
        f.sig = split_run(run);
        f.shard = take_shard(f.sig, f.items, path);
    }
    SigKV unsharded;  // the run signature the unsharded records carry
    for (auto & kv : split_run(run))
        if (!is_shard_key(kv.first)) unsharded.push_back(kv);
    const std::string plain_run = join_run(unsharded);
    for (size_t k = first; k < lines.size(); ++k) {
        if (lines[k].empty()) continue;
        const std::string where = path + ":" + std::to_string(k + 1);
        json j = json::parse(lines[k], nullptr, false);
        if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
        if (!j.contains("shard") || j["shard"] != f.shard.str()) throw Error(where + ": not a record of shard " + f.shard.str());
        if (f.kind == "records") {
            if (!j.contains("run") || j["run"] != run) throw Error(where + ": a record of another run (mixed files?)");
            j["run"] = plain_run;
        }
        const size_t idx = index_of(j, where);
        j.erase("shard");
        j.erase("index");
        f.rows.emplace_back(idx, j.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    return f;
}

// What a signature difference means to the user.
std::string describe(const std::string & diff) {
    if (diff.rfind("shard", 0) == 0) return "data differs: " + diff;  // shard_items, shard_data, prep's shard {…}
    if (diff.rfind("model", 0) == 0 || diff.rfind("weights", 0) == 0) return "model differs: " + diff;
    return "settings differ: " + diff;
}

}  // namespace

MergedShards merge_shards(const std::vector<std::string> & paths) {
    if (paths.empty()) throw Error("merge: no shard files given");
    std::vector<ShardFile> files;
    for (auto & p : paths) {
        if (!exists(p)) throw Error("cannot read " + p + " (no such file)");
        const std::string mp = manifest_path(p);
        files.push_back(exists(mp) ? read_embed(p, mp) : read_text(p));
    }
    const ShardFile & f0 = files[0];
    std::map<int, const ShardFile *> by_i;
    for (const ShardFile & f : files) {
        if (f.kind != f0.kind) throw Error(f.path + " is a " + f.kind + " shard, " + f0.path + " a " + f0.kind + " one");
        if (f.shard.n != f0.shard.n)
            throw Error(f.path + " is shard " + f.shard.str() + ", " + f0.path + " is " + f0.shard.str() +
                        ": shards of a split into another number of parts");
        const std::string d = first_difference(f0.sig, f.sig);
        if (!d.empty()) throw Error(f.path + " is not a shard of the run " + f0.path + " belongs to: " + describe(d));
        if (f.items != f0.items) throw Error(f.path + " is not a shard of the run " + f0.path + " belongs to: data differs (item count)");
        if (f.dim != f0.dim) throw Error(f.path + ": dim " + std::to_string(f.dim) + ", " + f0.path + ": " + std::to_string(f0.dim));
        auto [it, fresh] = by_i.emplace(f.shard.i, &f);
        if (!fresh) throw Error(it->second->path + " and " + f.path + " are both shard " + f.shard.str() + " (a shard given twice)");
    }
    for (int i = 0; i < f0.shard.n; ++i)
        if (!by_i.count(i))
            throw Error("shard " + std::to_string(i) + "/" + std::to_string(f0.shard.n) + " is missing (" +
                        std::to_string(files.size()) + " of " + std::to_string(f0.shard.n) + " shard files given)");

    // every item exactly once, in its own shard
    const size_t n = f0.items;
    auto missing = [&](size_t g) {
        return Error("item " + std::to_string(g) + " is missing from " + by_i.at((int) (g % f0.shard.n))->path +
                     " (that shard did not finish: rerun it, it resumes)");
    };
    {
        // fewer rows than the run's items: name the first one missing without allocating the claimed count
        std::vector<size_t> all;
        for (const ShardFile & f : files) {
            if (!f.indices.empty()) all.insert(all.end(), f.indices.begin(), f.indices.end());
            else for (auto & r : f.rows) all.push_back(r.first);
        }
        if (all.size() < n) {
            std::sort(all.begin(), all.end());
            size_t g = 0;
            for (size_t x : all) {
                if (x > g) break;
                if (x == g) ++g;
            }
            throw missing(g);
        }
    }
    std::vector<std::pair<const ShardFile *, size_t>> row_at(n, {nullptr, 0});
    for (const ShardFile & f : files) {
        std::vector<size_t> idx = f.indices;
        if (idx.empty())
            for (auto & r : f.rows) idx.push_back(r.first);
        for (size_t k = 0; k < idx.size(); ++k) {
            const size_t g = idx[k];
            if (g >= n) throw Error(f.path + ": item " + std::to_string(g) + " is past the run's " + std::to_string(n) + " items");
            if (!f.shard.owns(g)) throw Error(f.path + ": item " + std::to_string(g) + " is not shard " + f.shard.str() + "'s");
            if (row_at[g].first) throw Error(f.path + ": item " + std::to_string(g) + " twice");
            row_at[g] = {&f, k};
        }
    }
    for (size_t g = 0; g < n; ++g)
        if (!row_at[g].first) throw missing(g);

    MergedShards m;
    m.kind = f0.kind;
    m.n_shards = f0.shard.n;
    m.items = n;
    m.sig = f0.sig;
    m.header = f0.header;
    m.dim = f0.dim;
    for (const ShardFile & f : files) {
        m.tokens += f.tokens;
        m.truncated += f.truncated;
    }
    if (m.kind == "embed-npy") {
        m.data.resize(n * m.dim);
        for (size_t g = 0; g < n; ++g) {
            auto [f, k] = row_at[g];
            std::copy(f->data.begin() + k * m.dim, f->data.begin() + (k + 1) * m.dim, m.data.begin() + g * m.dim);
        }
    } else {
        m.lines.reserve(n);
        for (size_t g = 0; g < n; ++g) m.lines.push_back(row_at[g].first->rows[row_at[g].second].second);
    }
    return m;
}

void write_merged(const MergedShards & m, const std::string & out) {
    if (m.kind == "embed-npy") {
        write_npy(out, m.data.data(), {m.items, m.dim});
        return;
    }
    write_file_atomic(out, [&](FILE * fp) {
        if (m.header) {
            const std::string h = m.header->dump() + "\n";
            write_all(fp, h.data(), h.size(), out);
        }
        for (const std::string & l : m.lines) {
            write_all(fp, l.data(), l.size(), out);
            write_all(fp, "\n", 1, out);
        }
    });
}

}  // namespace kvlens::cli
