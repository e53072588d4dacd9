// kvlens serve's request parsing (tools/kvlens/serve_request.h), the whole path a POST body takes before the model
// sees it: parse_body, then the endpoint's parser. Besides no crash: every failure is an ApiError (400 or 404, with
// a message), never another exception; what a parser accepts is in range (temperature finite >= 0, top_p in [0, 1],
// max_tokens and reasoning_budget >= -1, texts valid UTF-8 and non-empty).
// Input: byte 0 picks the endpoint (chat, completion, embeddings, control) and the rules (classifier on/off);
// the rest is the body.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "serve_request.h"
#include "validate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens::serve;
    if (size < 1) return 0;
    const uint8_t opt = data[0];
    const std::string body(reinterpret_cast<const char *>(data + 1), size - 1);
    RequestRules r;
    r.alias = "kvlens";
    r.model_path = "models/kvlens-reasoner.gguf";
    r.classifier = opt & 4;
    r.reasoning_budget = (opt & 8) ? 64 : -1;
    try {
        json b = parse_body(body);
        (void)parse_stream(b);
        Job job;
        switch (opt & 3) {
            case 0: {
                auto msgs = parse_chat(b, r, job);
                if (msgs.empty() || msgs.back().role != "user") std::abort();
                for (auto & m : msgs)
                    if (!kvlens::cli::valid_utf8(m.content)) std::abort();
                break;
            }
            case 1: {
                std::string p = parse_completion(b, r, job);
                if (p.empty() || !kvlens::cli::valid_utf8(p)) std::abort();
                break;
            }
            case 2: {
                std::string fmt = parse_embeddings(b, r, job);
                if (fmt != "float" && fmt != "base64") std::abort();
                if (job.texts.empty()) std::abort();
                for (auto & t : job.texts)
                    if (t.empty() || !kvlens::cli::valid_utf8(t)) std::abort();
                break;
            }
            default:
                if (parse_control(b).empty()) std::abort();
                return 0;
        }
        const auto & s = job.sampling;
        if (!std::isfinite(s.temp) || s.temp < 0) std::abort();
        if (!std::isfinite(s.top_p) || s.top_p < 0 || s.top_p > 1) std::abort();
        if (s.top_k < 0 || job.max_tokens < -1 || job.reasoning_budget < -1) std::abort();
    } catch (const ApiError & e) {
        if ((e.status != 400 && e.status != 404) || std::string(e.what()).empty()) std::abort();
    }
    return 0;
}
