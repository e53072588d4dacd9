#include "kvlens/log.h"

#include <atomic>
#include <cstdio>
#include <cstring>

#include "ggml.h"
#include "llama.h"

namespace kvlens {
namespace {
std::atomic<int> g_level{0};
bool g_last_shown = false;  // continuation lines (GGML_LOG_LEVEL_CONT) follow their head line

void log_cb(ggml_log_level level, const char * text, void *) {
    bool show;
    if (level == GGML_LOG_LEVEL_CONT) {
        show = g_last_shown;
    } else {
        int need = level == GGML_LOG_LEVEL_ERROR ? 1 : level == GGML_LOG_LEVEL_WARN ? 1 : 2;
        show = g_level.load() >= need;
        g_last_shown = show;
    }
    if (show) std::fputs(text, stderr);
}
}  // namespace

void set_verbosity(int level) {
    g_level = level;
    llama_log_set(log_cb, nullptr);
    ggml_log_set(log_cb, nullptr);
}

void init_logging() {
    static const bool once = (llama_log_set(log_cb, nullptr), ggml_log_set(log_cb, nullptr), true);
    (void) once;
}

}  // namespace kvlens
