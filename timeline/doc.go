// Package timeline records what each rank of a job does over time, as a Chrome trace
// (the trace-event JSON that chrome://tracing and https://ui.perfetto.dev load): one process
// row per rank, one thread row per goroutine role (a group's collectives, the DDP training
// loop, a pipeline stage and its senders), complete ("X") events for intervals, instants
// ("i") for points, metadata ("M") naming the rows.
//
// Run a job with gorun --timeline trace.json (or GORUN_TIMELINE=trace.json): every rank
// records into trace.rank<N>.json (FromEnv) and gorun merges them into trace.json when the
// job ends (Merge). Package collective records every op (queued, started, finished, with its
// kind, bytes, dtype, algorithm, links and sequence number), package ddp the phases of a
// step (forward, backward per layer, bucket launch and wait, optimizer), package pipeline
// every action (forward and backward per micro-batch, receive, send).
//
// Cost. Tracing off means a nil *Recorder, whose methods return after one nil check: no
// allocation, no lock, no clock read. On, an event is a clock read, a mutex and a copy into
// a preallocated ring of at most Config.MaxEvents events (arguments are stored inline: no
// allocation per event either, once the ring has grown). A full ring drops the oldest events
// and the file says how many (otherData.dropped_events, and a global instant at the start
// of what was kept). The file is written by Flush and Close; package collective flushes the
// process's recorder when the group InitFromEnv made is closed, which a training program
// does on every way out that it controls (return, error, SIGTERM handled as a cancelled
// context). A rank killed with SIGKILL leaves the file of its last flush.
package timeline
