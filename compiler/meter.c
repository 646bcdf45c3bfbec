/* compiler/meter.c -- a pass's progress to the pipeline's callback (bj_pipeline_opts.progress):
 * counted under a mutex so worker threads can report as they finish items, and delivered one
 * call at a time, so the callback (a driver's progress bar) needs no locking of its own. */
#include "compiler/passes.h"

void bj_pass_meter_begin(bj_pass_meter *m, const bj_pass_ctx *cx, const char *pass, int64_t total, int64_t items) {
    m->opts = cx->opts->progress ? cx->opts : NULL;
    m->p = (bj_pass_progress){ .pass = pass, .total = total, .items_total = items };
    if (!m->opts) return;
    pthread_mutex_init(&m->mu, NULL);
    m->opts->progress(m->opts->progress_ud, &m->p);
}

void bj_pass_meter_add(bj_pass_meter *m, int64_t amount) {
    if (!m->opts) return;
    pthread_mutex_lock(&m->mu);
    m->p.done += amount;
    m->p.items_done++;
    m->opts->progress(m->opts->progress_ud, &m->p);
    pthread_mutex_unlock(&m->mu);
}

void bj_pass_meter_end(bj_pass_meter *m) {
    if (m->opts) pthread_mutex_destroy(&m->mu);
    m->opts = NULL;
}
