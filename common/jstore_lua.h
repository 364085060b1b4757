/* jstore_lua.h - the Lua scripts of the job-status store (jstore.c): the ones
 * that touch no transport's queue. Scripts that must change a queue and a status
 * together live with their transport (rstream_lua.h), under the same keys.
 *
 * Keys (one Redis, not cluster-safe: scripts compute key names):
 *   cv:types               set of job types ever published
 *   cv:job:<id>            hash: the status (state, type, pr = producer, ...) and,
 *                          unless the job is a lean stream job, its envelope (payload,
 *                          attempt, epoch, ...); m = the stream entry of a lean job
 *                          (mode 'q': its state is then read from the consumer group,
 *                          JSTORE_LUA_GET); se = the epoch of the last settled delivery
 *                          (or of the replay that began this life): epoch - se =
 *                          deliveries that never settled, the poison-job guard's count
 *                          (mode 'k'; a lean job counts its entry's deliveries); held =
 *                          1 while a dead job's effects may be unsettled
 *   cv:kept:<type>         set of lean stream entries whose delivery did not succeed
 *                          (retried, failed, died): their job's status outlives the
 *                          entry's retirement (JSTORE_LUA_RETIRE_FN)
 *   cv:delayed:<type>      zset id -> due time (ms): scheduled jobs and retries
 *   cv:dead, cv:dead:<type> zset id -> time it ended (ms * 1000 + a sequence, so
 *                          that order holds within a millisecond): failed and dead jobs.
 *                          Never trimmed by size: a job leaves by replay, an operator's
 *                          purge or its type's retention, never while held
 *   cv:held                set of dead job ids whose effects may be unsettled
 *   cv:idem:<type>:<producer>:<key>  string -> id of the producer's first job with
 *                          that idempotency key
 *   cv:stats:<type>        hash of counters: enqueued succeeded failed retried dead
 *   cv:workers             zset name -> last heartbeat (ms); cv:worker:<name> hash
 *   cv:lease:<name>        string -> the owner of a fleet-wide duty, with a TTL
 *   cv:unproduced          zset id -> time recorded (ms): jobs an external transport
 *                          (Kafka) recorded as queued but has not yet seen produced;
 *                          its sweep produces again what stays here past a grace
 * Status-hash fields only an external transport writes: kk = the job's ordering key
 * (the message key), kq = how many times the job was handed to the transport to
 * produce; a message carries its kq, and one older than the hash's is stale.
 *
 * Modes. Publish, start, settle and replay are shared by the transports, with
 * ARGV[1] the mode: 'q' writes the Redis Streams queue (cv:q:<type>, group cv:
 * XADD, XACK) in the same atomic step as the status; 'k' (external) writes the
 * status only and tracks cv:unproduced and kq; retries then wait in the
 * consumer, which holds their key (kstream.c), not in cv:delayed.
 * Every script runs atomically, so many producers and workers can call them at once. */
#ifndef CV_JSTORE_LUA_H
#define CV_JSTORE_LUA_H

#include "log.h" /* CV_STR */

/* The status index of fresh jobs (mode 'q'). A job whose id the API drew for
 * its publish (job.h fresh_id: a v7 UUID, its first 48 bits the time in ms),
 * due now and without an Idempotency-Key, has no status hash of its own while
 * it is queued, running or succeeded: its stream entry (field b instead of j)
 * and one field of the hash cv:ix:<type>:<bucket> (id -> "<entry id>
 * <producer>", bucket = the id's ms / 10000) are all there is, and the
 * bucket numbers of a type are listed in the zset cv:ixs:<type>. Publish adds
 * a whole batch's fields with one HSET per bucket; retiring the entries
 * deletes no per-job key: a bucket goes whole (UNLINK) once the type's stream
 * is trimmed a minute past its end, so that a job is findable for as long as
 * its entry is there, with API hosts' clocks up to 60 s behind Redis's. A job
 * that retries, fails or dies gets its whole status in cv:job:<id> as any
 * other (the settle moves m and pr over and drops its field), so that the
 * index never outlives that status (a purge, the dead letters' retention).
 * Why: a key per job costs ~2 us of Redis to write and as much again to
 * delete, a field of a bucket a fraction of that, and ~100 B less memory. */
/* A bucket's span in ms, and how long past its end a bucket outlives its
 * entries: one number for the C side (jstore_ix_key) and the scripts. */
#define JSTORE_IX_SPAN_MS 10000
#define JSTORE_IX_SLACK_MS 60000
#define JSTORE_LUA_IX_FN \
"local IX_SPAN, IX_SLACK = " CV_STR(JSTORE_IX_SPAN_MS) ", " CV_STR(JSTORE_IX_SLACK_MS) "\n" \
"local function ix_bucket(id)\n" \
"  if string.sub(id, 15, 15) ~= '7' then return nil end\n" \
"  local ms = tonumber(string.sub(id, 1, 8) .. string.sub(id, 10, 13), 16)\n" \
"  if not ms then return nil end\n" \
"  return string.format('%d', math.floor(ms / IX_SPAN))\n" \
"end\n" \
"local function ix_key(typ, b) return 'cv:ix:' .. typ .. ':' .. b end\n" \
"local function ix_get(typ, id)\n" \
"  local b = ix_bucket(id)\n" \
"  local v = b and redis.call('HGET', ix_key(typ, b), id)\n" \
"  if not v then return nil end\n" \
"  local m, pr = string.match(v, '^(%S+) (.*)$')\n" \
"  return m, pr, ix_key(typ, b)\n" \
"end\n" \
"local function ix_find(id)\n" \
"  if not ix_bucket(id) then return nil end\n" \
"  for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"    local m, pr = ix_get(typ, id)\n" \
"    if m then return typ, m, pr end\n" \
"  end\n" \
"  return nil\n" \
"end\n" \
"local function ix_drop(typ, upto_ms)\n" \
"  local last = math.floor((upto_ms - IX_SLACK) / IX_SPAN) - 1\n" \
"  local zk = 'cv:ixs:' .. typ\n" \
"  local olds = redis.call('ZRANGEBYSCORE', zk, '-inf', last, 'LIMIT', 0, 100)\n" \
"  for _, b in ipairs(olds) do redis.call('UNLINK', ix_key(typ, b)) end\n" \
"  if #olds > 0 then redis.call('ZREM', zk, unpack(olds)) end\n" \
"end\n"

/* Retention of a Redis stream (mode 'q'), a Lua function text the settle and
 * promote scripts start with: retire(typ, now, ttl, cap, budget, count_only).
 * The entries of cv:q:<typ> before our group's oldest unsettled one (its
 * oldest pending entry, else everything it has read) are acked. Of those,
 * the oldest go while the stream holds more than cap entries, or (unless
 * count_only) while they are older than ttl seconds: at most budget, each
 * lean one with its job's status, which it ended as a success: a lean entry
 * whose delivery retried, failed or died is listed in cv:kept:<typ> by its
 * settle, and its job's status (a new life, a dead letter) stays. The
 * statuses go by one DEL per 500 (a redis.call from Lua costs about 1 us of
 * its own, each of its arguments 0.17 us: one per job cost twice as much). An entry
 * published before the lean path (no envelope) leaves its status to its TTL. So a type's stream holds at most cap entries,
 * or its unsettled ones when more (a backlog past cap keeps no finished job),
 * and Redis memory is bounded by configuration (README: bytes per retained
 * job). Returns how many went (counted as retired in cv:stats:<typ>). */
#define JSTORE_LUA_RETIRE_FN \
JSTORE_LUA_IX_FN \
"local function last_delivered(s)\n" \
"  for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n" \
"    local name, ld = nil, nil\n" \
"    for i = 1, #g, 2 do\n" \
"      if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then ld = g[i+1] end\n" \
"    end\n" \
"    if name == 'cv' then return ld end\n" \
"  end\n" \
"  return false\n" \
"end\n" \
"local function retire(typ, now, ttl, cap, budget, count_only)\n" \
"  local s = 'cv:q:' .. typ\n" \
"  local over = redis.call('XLEN', s) - cap\n" \
"  if over <= 0 and count_only then return 0 end\n" \
"  local ok, p = pcall(redis.call, 'XPENDING', s, 'cv')\n" \
"  if not ok then return 0 end\n" \
"  local upto = p[2] and ('(' .. p[2]) or last_delivered(s)\n" \
"  if not upto then return 0 end\n" \
"  local oldest = now - ttl * 1000\n" \
"  local function young(id) return tonumber(string.match(id, '^(%d+)')) >= oldest end\n" \
"  if over <= 0 then\n" \
"    local h = redis.call('XRANGE', s, '-', upto, 'COUNT', 1)\n" \
"    if not h[1] or young(h[1][1]) then return 0 end\n" \
"  end\n" \
"  local kk = 'cv:kept:' .. typ\n" \
"  local nkept, kept = redis.call('SCARD', kk), {}\n" \
"  if nkept > 0 and nkept <= 1000 then\n" \
"    for _, m in ipairs(redis.call('SMEMBERS', kk)) do kept[m] = true end\n" \
"  end\n" \
"  local cut, gone, dels = false, 0, {}\n" \
"  for i, e in ipairs(redis.call('XRANGE', s, '-', upto, 'COUNT', budget)) do\n" \
"    if i > over and (count_only or young(e[1])) then break end\n" \
"    local f = e[2]\n" \
"    if f[1] == 'j' or f[1] == 'b' then\n" \
"      local keep = nkept > 0 and (kept[e[1]] or (nkept > 1000 and\n" \
"        redis.call('SISMEMBER', kk, e[1]) == 1))\n" \
"      if keep then\n" \
"        redis.call('SREM', kk, e[1])\n" \
"      elseif f[1] == 'j' then\n" \
"        dels[#dels+1] = 'cv:job:' .. string.match(f[2], '^(%S+) ')\n" \
"      end\n" \
"    end\n" \
"    cut = e[1]; gone = gone + 1\n" \
"  end\n" \
"  for i = 1, #dels, 500 do\n" \
"    redis.call('DEL', unpack(dels, i, math.min(i + 499, #dels)))\n" \
"  end\n" \
"  if cut then\n" \
"    local ms, seq = string.match(cut, '^(%d+)-(%d+)$')\n" \
"    redis.call('XTRIM', s, 'MINID', ms .. '-' .. (tonumber(seq) + 1))\n" \
"    redis.call('HINCRBY', 'cv:stats:' .. typ, 'retired', gone)\n" \
"    ix_drop(typ, tonumber(ms))\n" \
"  end\n" \
"  return gone\n" \
"end\n"

/* The envelope a lean stream entry carries in its one field j (JSTORE_LUA_PUBLISH):
 *   "<id> <attempt> <max_attempts> <epoch base> <created_ms> <traceparent>\n<payload>"
 * one string, so that XADD, XREADGROUP and the AOF handle one field, not seven
 * (each argument of a redis.call from Lua costs about 0.17 us). The payload is
 * last and may hold anything. env_split(j) returns the seven parts. */
#define JSTORE_LUA_ENV_FN \
"local function env_split(j)\n" \
"  local id, a, m, e, c, tp, at = string.match(j, '^(%S+) (%d+) (%d+) (%d+) (%d+) (%S*)\\n()')\n" \
"  if not id then return nil end\n" \
"  return id, a, m, e, c, tp, string.sub(j, at)\n" \
"end\n" \
"local function env_join(id, a, m, e, c, tp, payload)\n" \
"  return id .. ' ' .. a .. ' ' .. m .. ' ' .. e .. ' ' .. c .. ' ' .. tp .. '\\n' .. payload\n" \
"end\n"

/* Publish. ARGV: mode, now, idem_ttl_s, n, then n x (id type env not_before_ms
 * idem_key producer key max_queued fresh), env the envelope as
 * JSTORE_LUA_ENV_FN packs it (attempt 1, epoch base 0), fresh '1' when the id
 * was drawn for this publish (job.h fresh_id: no job can hold it, so its
 * existence is not checked; an Idempotency-Key still is).
 * Returns a flat array: id, dup per job, dup 0 = published, 1 = a duplicate
 * (id is the earlier job: same idempotency key of the same producer, or a job
 * with this id, type and producer exists already), 2 = a conflict (a job with
 * this id exists with another type or producer; nothing written), 3 = refused
 * by backpressure (id is then the seconds to wait). Every publish is
 * idempotent by job id: a retry of a publish whose outcome was unknown cannot
 * enqueue twice, even when the two calls arrive in either order. Mode 'k':
 * a new queued job gets kq = 1 and enters cv:unproduced; the caller produces it.
 *
 * Mode 'q', the lean path (issue 8). A job due now travels in its stream
 * entry (field j, the envelope as given); the worker starts it from the entry
 * alone. Its status hash is small (type state=queued m=<entry id> pr
 * [not_before_ms idem]): nothing writes it when the job starts or succeeds,
 * its state is read from the consumer group (JSTORE_LUA_GET), and it goes
 * together with its entry when the type's retention retires both
 * (JSTORE_LUA_RETIRE_FN). A scheduled job keeps the whole envelope in its hash
 * until the promoter puts it on the stream.
 *
 * Backpressure. A type with max_queued > 0 holds at most that many unsettled
 * jobs (queued, scheduled, running, retrying): enqueued + replayed - succeeded
 * - failed - dead, from its counters. When this call's jobs of the type would
 * pass the bound, all of them that are not duplicates are refused (a batch
 * stays all or none), with a wait of (excess / drain rate) seconds, 1..300.
 * The drain rate is measured here, from the counters, at most every 10 s per
 * type (fields rs_ms, rs_done, rate of cv:stats:<type>): nothing is written
 * for unbounded types. */
#define JSTORE_LUA_PUBLISH \
JSTORE_LUA_ENV_FN \
JSTORE_LUA_IX_FN \
"local mode, now, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n" \
"local streams = mode == 'q'\n" \
"local out, seen, want, full, ixs = {}, {}, {}, {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local typ, bound = ARGV[4 + i * 9 + 2], tonumber(ARGV[4 + i * 9 + 8])\n" \
"  if bound > 0 then want[typ] = {bound, ((want[typ] or {})[2] or 0) + 1} end\n" \
"end\n" \
"for typ, w in pairs(want) do\n" \
"  local sk = 'cv:stats:' .. typ\n" \
"  local c = redis.call('HMGET', sk, 'enqueued', 'replayed', 'succeeded', 'failed', 'dead',\n" \
"    'rs_ms', 'rs_done', 'rate')\n" \
"  local function v(x) return tonumber(x) or 0 end\n" \
"  local done = v(c[3]) + v(c[4]) + v(c[5])\n" \
"  local live = v(c[1]) + v(c[2]) - done\n" \
"  local rate = v(c[8])\n" \
"  if now - v(c[6]) >= 10000 then\n" \
"    if v(c[6]) > 0 then rate = (done - v(c[7])) * 1000 / (now - v(c[6])) end\n" \
"    redis.call('HSET', sk, 'rs_ms', now, 'rs_done', done, 'rate', rate)\n" \
"  end\n" \
"  local excess = live + w[2] - w[1]\n" \
"  if excess > 0 then\n" \
"    local wait = 300\n" \
"    if rate > 0 then wait = math.ceil(excess / rate) end\n" \
"    if wait < 1 then wait = 1 elseif wait > 300 then wait = 300 end\n" \
"    full[typ] = wait\n" \
"  end\n" \
"end\n" \
"for i = 0, n - 1 do\n" \
"  local b = 4 + i * 9\n" \
"  local id, typ, env, nb = ARGV[b+1], ARGV[b+2], ARGV[b+3], tonumber(ARGV[b+4])\n" \
"  local idem, pr, key, fresh = ARGV[b+5], ARGV[b+6], ARGV[b+7], ARGV[b+9] == '1'\n" \
"  local k = 'cv:job:' .. id\n" \
"  local prev, dup, ik = false, 1, false\n" \
"  if idem ~= '' then\n" \
"    ik = 'cv:idem:' .. typ .. ':' .. pr .. ':' .. idem\n" \
"    prev = redis.call('GET', ik)\n" \
"  end\n" \
"  if not prev and not fresh then\n" \
"    local e = redis.call('HMGET', k, 'type', 'pr')\n" \
"    if not e[1] then\n" \
"      local t2, _, p2 = ix_find(id)\n" \
"      e = {t2, p2}\n" \
"    end\n" \
"    if e[1] then\n" \
"      prev = id\n" \
"      if e[1] ~= typ or (e[2] or '') ~= pr then dup = 2 end\n" \
"    end\n" \
"  end\n" \
"  if prev then\n" \
"    out[#out+1] = prev; out[#out+1] = dup\n" \
"  elseif full[typ] then\n" \
"    out[#out+1] = tostring(full[typ]); out[#out+1] = 3\n" \
"  else\n" \
"    if ik then redis.call('SET', ik, id, 'EX', ttl) end\n" \
"    if not seen[typ] then\n" \
"      seen[typ] = 0\n" \
"      if redis.call('SADD', 'cv:types', typ) == 1 and streams then\n" \
"        pcall(redis.call, 'XGROUP', 'CREATE', 'cv:q:' .. typ, 'cv', '0', 'MKSTREAM')\n" \
"      end\n" \
"    end\n" \
"    local b = streams and fresh and nb == 0 and idem == '' and ix_bucket(id)\n" \
"    if b then\n" \
"      local m = redis.call('XADD', 'cv:q:' .. typ, '*', 'b', env)\n" \
"      local key = ix_key(typ, b)\n" \
"      local t = ixs[key]\n" \
"      if not t then t = {typ, b}; ixs[key] = t end\n" \
"      t[#t+1] = id; t[#t+1] = m .. ' ' .. pr\n" \
"    elseif streams and nb <= now then\n" \
"      local m = redis.call('XADD', 'cv:q:' .. typ, '*', 'j', env)\n" \
"      if nb > 0 or idem ~= '' then\n" \
"        redis.call('HSET', k, 'type', typ, 'state', 'queued', 'm', m, 'pr', pr,\n" \
"          'not_before_ms', nb, 'idem', idem)\n" \
"      else\n" \
"        redis.call('HSET', k, 'type', typ, 'state', 'queued', 'm', m, 'pr', pr)\n" \
"      end\n" \
"    else\n" \
"      local _, _, maxa, _, created, tp, payload = env_split(env)\n" \
"      local state = 'queued'\n" \
"      if nb > now then state = 'scheduled' end\n" \
"      redis.call('HSET', k, 'id', id, 'type', typ, 'state', state, 'attempt', 1,\n" \
"        'max_attempts', maxa, 'created_ms', created, 'payload', payload, 'tp', tp, 'pr', pr)\n" \
"      if nb > 0 or idem ~= '' then\n" \
"        redis.call('HSET', k, 'not_before_ms', nb, 'idem', idem)\n" \
"      end\n" \
"      if not streams then redis.call('HSET', k, 'kk', key) end\n" \
"      if state == 'scheduled' then\n" \
"        redis.call('ZADD', 'cv:delayed:' .. typ, nb, id)\n" \
"      else\n" \
"        redis.call('HSET', k, 'kq', 1); redis.call('ZADD', 'cv:unproduced', now, id)\n" \
"      end\n" \
"    end\n" \
"    seen[typ] = seen[typ] + 1\n" \
"    out[#out+1] = id; out[#out+1] = 0\n" \
"  end\n" \
"end\n" \
"for key, t in pairs(ixs) do\n" \
"  for i = 3, #t, 1000 do redis.call('HSET', key, unpack(t, i, math.min(i + 999, #t))) end\n" \
"  redis.call('ZADD', 'cv:ixs:' .. t[1], t[2], t[2])\n" \
"end\n" \
"for typ, c in pairs(seen) do redis.call('HINCRBY', 'cv:stats:' .. typ, 'enqueued', c) end\n" \
"return out\n"

/* A new delivery. ARGV: mode, now, consumer, type, n, then n x (msgid, id, kq)
 * (kq '' in mode 'q'). Returns per delivery: {msgid, id, attempt, max,
 * payload, tp, epoch, unsettled}, {msgid, id, 'skip'} for a job that already
 * ended, is gone or whose message is stale (an older kq: it was produced again
 * since; mode 'q' acks its entry here), or {msgid, id, 'wait', not_before_ms}
 * for a retry that is not due yet (a consumer that took the partition over
 * from a dead one keeps the backoff). The epoch counts deliveries over the
 * job's whole history: it is the fencing token every later write of this
 * delivery must present. unsettled = deliveries since the last settle of this
 * life, this one included. */
#define JSTORE_LUA_START \
"local mode, now, consumer, typ, n = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])\n" \
"local out, gone = {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local msgid, id, kq = ARGV[6 + i*3], ARGV[7 + i*3], ARGV[8 + i*3]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local st = redis.call('HMGET', k, 'state', 'attempt', 'max_attempts', 'payload', 'tp', 'se',\n" \
"    'kq', 'not_before_ms')\n" \
"  if (not st[1]) or st[1] == 'succeeded' or st[1] == 'failed' or st[1] == 'dead'\n" \
"     or (kq ~= '' and tonumber(kq) < (tonumber(st[7]) or 0)) then\n" \
"    gone[#gone+1] = msgid\n" \
"    out[#out+1] = {msgid, id, 'skip'}\n" \
"  elseif st[1] == 'retrying' and (tonumber(st[8]) or 0) > tonumber(now) then\n" \
"    out[#out+1] = {msgid, id, 'wait', st[8]}\n" \
"  else\n" \
"    local epoch = redis.call('HINCRBY', k, 'epoch', 1)\n" \
"    redis.call('HSET', k, 'state', 'running', 'started_ms', now, 'updated_ms', now,\n" \
"      'worker', consumer)\n" \
"    if mode ~= 'q' then redis.call('ZREM', 'cv:unproduced', id) end\n" \
"    out[#out+1] = {msgid, id, st[2], st[3], st[4], st[5], epoch, epoch - (tonumber(st[6]) or 0)}\n" \
"  end\n" \
"end\n" \
"if #gone > 0 and mode == 'q' then\n" \
"  redis.call('XACK', 'cv:q:' .. typ, 'cv', unpack(gone))\n" \
"end\n" \
"return out\n"

/* Settle deliveries. ARGV: mode, now, status_ttl_s, expire_acks, ncaps,
 * ncaps x (type, retain), then the lean successes grouped by type: ntypes,
 * ntypes x (type, k, lo, hi, k x (msgid, dc, id)) (lo, hi: the smallest and
 * largest msgid of the group), then the rest: n, n x (id type msgid
 * epoch outcome delay_ms error held dc attempt max payload tp). outcome: ack
 * retry defer fail dead. Returns 'ok', 'fenced' (counted as fenced in
 * cv:stats:<type>) or 'gone' per delivery, the
 * lean successes first, in the order given. A fenced delivery writes nothing,
 * not even its ack: the entry belongs to the newer delivery. defer is retry
 * without spending an attempt (our own infrastructure was down); mode 'q' puts
 * a retry in cv:delayed, mode 'k' leaves it to the consumer (not_before_ms
 * says when). A failed or dead job with held = 1 is listed in cv:held. Nothing
 * here ever deletes a dead job. Acks and counters are written once per stream
 * at the end; then, mode 'q', a type with a retain given retires what passed
 * its bound (JSTORE_LUA_RETIRE_FN, by count: the promoter also retires by age).
 *
 * Two kinds of fencing token:
 *  - dc given (a lean stream delivery, mode 'q'): the token is (entry, dc),
 *    dc = the entry's delivery count when it was delivered. Redis counts
 *    deliveries per pending entry (XAUTOCLAIM adds one), so the delivery is
 *    current exactly when its entry is still pending with that count. The
 *    lean successes of a type are checked with one XPENDING over their range
 *    (one per entry only when that range holds too many others), and write
 *    nothing but their ack: no status write (unless expire_acks is 1: the
 *    caller asked for a status TTL other than jobs.status_ttl_s, which each
 *    success then gets). A lean retry, fail or dead writes the whole status
 *    with the envelope (attempt, max, payload, tp: the promoter and a replay
 *    put the job back on the stream from it; m and pr moved over from the
 *    status index for an indexed job, JSTORE_LUA_IX_FN), makes it persistent, and lists
 *    its entry in cv:kept:<type> so that the retention leaves that status be.
 *  - dc '' (mode 'k', and stream entries published before the lean path):
 *    the hash's epoch, which every start bumped; se records the settled epoch
 *    (the poison-job guard counts from there). */
#define JSTORE_LUA_SETTLE \
JSTORE_LUA_RETIRE_FN \
"local mode, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local streams, expire_acks, ncaps = mode == 'q', ARGV[4] == '1', tonumber(ARGV[5])\n" \
"local caps = {}\n" \
"for i = 0, ncaps - 1 do caps[ARGV[6 + i * 2]] = tonumber(ARGV[7 + i * 2]) end\n" \
"local out, acks, stats = {}, {}, {}\n" \
"local function count(typ, what, c)\n" \
"  local t = stats[typ]\n" \
"  if not t then t = {}; stats[typ] = t end\n" \
"  t[what] = (t[what] or 0) + (c or 1)\n" \
"end\n" \
"local function ack(typ, msgid)\n" \
"  local a = acks[typ]\n" \
"  if not a then a = {}; acks[typ] = a end\n" \
"  a[#a+1] = msgid\n" \
"end\n" \
"local a = 6 + ncaps * 2\n" \
"local ntypes = tonumber(ARGV[a]); a = a + 1\n" \
"for _ = 1, ntypes do\n" \
"  local typ, k, lo, hi = ARGV[a], tonumber(ARGV[a+1]), ARGV[a+2], ARGV[a+3]; a = a + 4\n" \
"  local s = 'cv:q:' .. typ\n" \
"  local lim = k * 2 + 256\n" \
"  local p = redis.call('XPENDING', s, 'cv', lo, hi, lim)\n" \
"  local pend = {}\n" \
"  for _, e in ipairs(p) do pend[e[1]] = e[4] end\n" \
"  for i = 0, k - 1 do\n" \
"    local m, dc, id = ARGV[a + i * 3], tonumber(ARGV[a + i * 3 + 1]), ARGV[a + i * 3 + 2]\n" \
"    local c = pend[m]\n" \
"    if c == nil and #p >= lim then\n" \
"      local q = redis.call('XPENDING', s, 'cv', m, m, 1)\n" \
"      c = q[1] and q[1][4]\n" \
"    end\n" \
"    if c == dc then\n" \
"      ack(typ, m)\n" \
"      if expire_acks then redis.call('EXPIRE', 'cv:job:' .. id, ttl) end\n" \
"      out[#out+1] = 'ok'\n" \
"    else\n" \
"      out[#out+1] = 'fenced'; count(typ, 'fenced')\n" \
"    end\n" \
"  end\n" \
"  count(typ, 'succeeded', #(acks[typ] or {}))\n" \
"  a = a + k * 3\n" \
"end\n" \
"local n = tonumber(ARGV[a])\n" \
"for i = 0, n - 1 do\n" \
"  local b = a + i * 13\n" \
"  local id, typ, msgid, epoch = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n" \
"  local what, delay, err, held = ARGV[b+5], tonumber(ARGV[b+6]), ARGV[b+7], ARGV[b+8]\n" \
"  local dc, att, maxa, payload, tp = ARGV[b+9], tonumber(ARGV[b+10]), ARGV[b+11], ARGV[b+12],\n" \
"    ARGV[b+13]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local lean, cur = dc ~= '', true\n" \
"  if lean then\n" \
"    local p = redis.call('XPENDING', 'cv:q:' .. typ, 'cv', msgid, msgid, 1)\n" \
"    if not (p[1] and tonumber(p[1][4]) == tonumber(dc)) then cur = false end\n" \
"  else\n" \
"    cur = redis.call('HGET', k, 'epoch')\n" \
"    if cur and cur ~= epoch then cur = false elseif not cur then cur = nil end\n" \
"  end\n" \
"  if cur == false then\n" \
"    out[#out+1] = 'fenced'; count(typ, 'fenced')\n" \
"  else\n" \
"    ack(typ, msgid)\n" \
"    local env = {'se', epoch}\n" \
"    if lean then\n" \
"      env = {'id', id, 'type', typ, 'epoch', epoch, 'attempt', att, 'max_attempts', maxa,\n" \
"        'payload', payload, 'tp', tp}\n" \
"      if what ~= 'ack' then\n" \
"        redis.call('PERSIST', k); redis.call('SADD', 'cv:kept:' .. typ, msgid)\n" \
"        local im, ipr, ik = ix_get(typ, id)\n" \
"        if im then\n" \
"          env[#env+1] = 'm'; env[#env+1] = im; env[#env+1] = 'pr'; env[#env+1] = ipr\n" \
"          redis.call('HDEL', ik, id)\n" \
"        end\n" \
"      end\n" \
"    end\n" \
"    if cur == nil then\n" \
"      out[#out+1] = 'gone'\n" \
"    elseif what == 'ack' then\n" \
"      if not lean then\n" \
"        redis.call('HSET', k, 'state', 'succeeded', 'finished_ms', now, 'updated_ms', now,\n" \
"          'se', epoch)\n" \
"        redis.call('EXPIRE', k, ttl)\n" \
"      elseif expire_acks then\n" \
"        redis.call('EXPIRE', k, ttl)\n" \
"      end\n" \
"      count(typ, 'succeeded')\n" \
"      out[#out+1] = 'ok'\n" \
"    elseif what == 'retry' or what == 'defer' then\n" \
"      local due = now + delay\n" \
"      if what == 'retry' then\n" \
"        if lean then env[8] = att + 1 else redis.call('HINCRBY', k, 'attempt', 1) end\n" \
"        count(typ, 'retried')\n" \
"      else\n" \
"        count(typ, 'deferred')\n" \
"      end\n" \
"      redis.call('HSET', k, 'state', 'retrying', 'last_error', err, 'not_before_ms', due,\n" \
"        'updated_ms', now, unpack(env))\n" \
"      if streams then redis.call('ZADD', 'cv:delayed:' .. typ, due, id) end\n" \
"      out[#out+1] = 'ok'\n" \
"    else\n" \
"      local state = 'dead'\n" \
"      if what == 'fail' then state = 'failed' end\n" \
"      redis.call('HSET', k, 'state', state, 'last_error', err, 'finished_ms', now,\n" \
"        'updated_ms', now, unpack(env))\n" \
"      if held == '1' then\n" \
"        redis.call('HSET', k, 'held', 1); redis.call('SADD', 'cv:held', id)\n" \
"      end\n" \
"      local at = now * 1000 + redis.call('INCR', 'cv:dead:seq') % 1000\n" \
"      redis.call('ZADD', 'cv:dead', at, id); redis.call('ZADD', 'cv:dead:' .. typ, at, id)\n" \
"      count(typ, state)\n" \
"      out[#out+1] = 'ok'\n" \
"    end\n" \
"  end\n" \
"end\n" \
"if streams then\n" \
"  for typ, am in pairs(acks) do\n" \
"    redis.call('XACK', 'cv:q:' .. typ, 'cv', unpack(am))\n" \
"    if caps[typ] then retire(typ, now, ttl, caps[typ], #am + 100, true) end\n" \
"  end\n" \
"end\n" \
"for typ, t in pairs(stats) do\n" \
"  for what, c in pairs(t) do\n" \
"    if c > 0 then redis.call('HINCRBY', 'cv:stats:' .. typ, what, c) end\n" \
"  end\n" \
"end\n" \
"return out\n"

/* Replay a failed or dead job: a new life. The attempt count starts again at
 * 1 and se = the current epoch, so the poison-job guard counts this life's
 * deliveries only; the epoch itself keeps growing (fencing spans lives: mode
 * 'q' puts it in the new entry as its epoch base). The held mark goes: the
 * next settle says again whether effects are unsettled. ARGV: mode, id, now,
 * status_ttl_s. Returns {'ok', type, kk, kq} ('q': the job is on its stream,
 * its status expires like a new job's; 'k': the caller produces it with that
 * key and kq), {'not_found'} or {'conflict'}. */
#define JSTORE_LUA_DEAD_RETRY \
JSTORE_LUA_ENV_FN \
"local mode, id, now = ARGV[1], ARGV[2], ARGV[3]\n" \
"local k = 'cv:job:' .. id\n" \
"local st = redis.call('HMGET', k, 'state', 'type', 'epoch', 'kk', 'payload', 'tp', 'max_attempts',\n" \
"  'created_ms')\n" \
"if not st[1] then return {'not_found'} end\n" \
"if st[1] ~= 'dead' and st[1] ~= 'failed' then return {'conflict'} end\n" \
"redis.call('HSET', k, 'state', 'queued', 'attempt', 1, 'updated_ms', now, 'not_before_ms', 0,\n" \
"  'se', st[3] or 0)\n" \
"redis.call('HDEL', k, 'finished_ms', 'held')\n" \
"redis.call('SREM', 'cv:held', id)\n" \
"redis.call('PERSIST', k)\n" \
"redis.call('ZREM', 'cv:dead', id); redis.call('ZREM', 'cv:dead:' .. st[2], id)\n" \
"local new = redis.call('SADD', 'cv:types', st[2]) == 1\n" \
"local kq = 0\n" \
"if mode == 'q' then\n" \
"  if new then pcall(redis.call, 'XGROUP', 'CREATE', 'cv:q:' .. st[2], 'cv', '0', 'MKSTREAM') end\n" \
"  local m = redis.call('XADD', 'cv:q:' .. st[2], '*', 'j',\n" \
"    env_join(id, 1, st[7] or 1, st[3] or 0, st[8] or now, st[6] or '', st[5] or '{}'))\n" \
"  redis.call('HSET', k, 'm', m)\n" \
"else\n" \
"  kq = redis.call('HINCRBY', k, 'kq', 1)\n" \
"  redis.call('ZADD', 'cv:unproduced', now, id)\n" \
"end\n" \
"redis.call('HINCRBY', 'cv:stats:' .. st[2], 'replayed', 1)\n" \
"return {'ok', st[2], st[4] or '', kq}\n"

/* One job's status. ARGV: id, now. Returns the status hash as a flat
 * HGETALL array ({} when there is none). A lean stream job (mode 'q': field m,
 * state queued) is not written when it starts or succeeds, so its state is
 * read here from its entry and our group "cv", and appended as fields that
 * override the hash's (the decoder keeps a field's last value):
 *   entry pending                 -> running (worker, started_ms from the
 *                                    idle time, epoch = base + deliveries)
 *   entry at or before the group's last-delivered id, not pending
 *                                 -> succeeded (acked; retry, fail and dead
 *                                    write the hash, so an ack is a success)
 *   otherwise                     -> queued
 * and its envelope from the entry (payload, tp, attempt, max_attempts,
 * created_ms: the entry is retired with the status, so it is there). A job
 * that never retried has no attempt in its hash: its first. A lean status
 * hash holds no id: the one asked for is added. A job with no hash may be in
 * the status index (JSTORE_LUA_IX_FN): its field gives type, entry and
 * producer, and when its entry was retired already (its bucket outlives it
 * by a minute or so) it is gone, as a retired hash is. */
#define JSTORE_LUA_GET \
JSTORE_LUA_ENV_FN \
JSTORE_LUA_IX_FN \
"local h = redis.call('HGETALL', 'cv:job:' .. ARGV[1])\n" \
"local indexed = false\n" \
"if #h == 0 then\n" \
"  local typ, m, pr = ix_find(ARGV[1])\n" \
"  if not typ then return h end\n" \
"  h = {'type', typ, 'state', 'queued', 'm', m, 'pr', pr}\n" \
"  indexed = true\n" \
"end\n" \
"local f = {}\n" \
"for i = 1, #h, 2 do f[h[i]] = h[i+1] end\n" \
"if #h > 0 and not f.id then h[#h+1] = 'id'; h[#h+1] = ARGV[1] end\n" \
"if not (f.m and f.state == 'queued' and f.type) then return h end\n" \
"if not f.attempt then h[#h+1] = 'attempt'; h[#h+1] = '1' end\n" \
"local s, m = 'cv:q:' .. f.type, f.m\n" \
"local ok, p = pcall(redis.call, 'XPENDING', s, 'cv', m, m, 1)\n" \
"if not ok then return h end\n" \
"local base = 0\n" \
"local e = redis.call('XRANGE', s, m, m)\n" \
"if indexed and not e[1] then return {} end\n" \
"if e[1] and (e[1][2][1] == 'j' or e[1][2][1] == 'b') then\n" \
"  local _, a, maxa, eb, c, tp, payload = env_split(e[1][2][2])\n" \
"  if a then\n" \
"    for _, kv in ipairs({{'attempt', a}, {'max_attempts', maxa}, {'created_ms', c}, {'tp', tp},\n" \
"        {'payload', payload}}) do\n" \
"      h[#h+1] = kv[1]; h[#h+1] = kv[2]\n" \
"    end\n" \
"    base = tonumber(eb)\n" \
"  end\n" \
"end\n" \
"local function split(id)\n" \
"  local a, b = string.match(id, '^(%d+)-(%d+)$')\n" \
"  return tonumber(a), tonumber(b)\n" \
"end\n" \
"if p[1] then\n" \
"  local started = tonumber(ARGV[2]) - p[1][3]\n" \
"  for _, kv in ipairs({{'state', 'running'}, {'worker', p[1][2]}, {'started_ms', started},\n" \
"      {'updated_ms', started}, {'epoch', base + p[1][4]}}) do\n" \
"    h[#h+1] = kv[1]; h[#h+1] = kv[2]\n" \
"  end\n" \
"  return h\n" \
"end\n" \
"local last = false\n" \
"for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n" \
"  local name, ld = nil, nil\n" \
"  for i = 1, #g, 2 do\n" \
"    if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then ld = g[i+1] end\n" \
"  end\n" \
"  if name == 'cv' then last = ld end\n" \
"end\n" \
"if last then\n" \
"  local am, as = split(m)\n" \
"  local bm, bs = split(last)\n" \
"  if am < bm or (am == bm and as <= bs) then\n" \
"    h[#h+1] = 'state'; h[#h+1] = 'succeeded'\n" \
"  end\n" \
"end\n" \
"return h\n"

/* An operator's purge of one dead job. ARGV: id. Returns 'ok', 'not_found',
 * 'live' (not dead or failed) or 'held' (effects may be unsettled). */
#define JSTORE_LUA_DEAD_PURGE \
"local id = ARGV[1]\n" \
"local k = 'cv:job:' .. id\n" \
"local st = redis.call('HMGET', k, 'state', 'type', 'held')\n" \
"if not st[1] then return 'not_found' end\n" \
"if st[1] ~= 'dead' and st[1] ~= 'failed' then return 'live' end\n" \
"if st[3] == '1' then return 'held' end\n" \
"redis.call('DEL', k)\n" \
"redis.call('ZREM', 'cv:dead', id); redis.call('ZREM', 'cv:dead:' .. st[2], id)\n" \
"redis.call('HINCRBY', 'cv:stats:' .. st[2], 'purged', 1)\n" \
"return 'ok'\n"

/* Retention of one type's dead letters. ARGV: type, cutoff (the set's score
 * of the newest job old enough: ms * 1000), max. Deletes up to max jobs that
 * ended before the cutoff, skipping held ones. Returns how many went. */
#define JSTORE_LUA_DEAD_EXPIRE \
"local typ, cutoff, max = ARGV[1], ARGV[2], tonumber(ARGV[3])\n" \
"local dk = 'cv:dead:' .. typ\n" \
"local skip = redis.call('SCARD', 'cv:held')\n" \
"local ids = redis.call('ZRANGEBYSCORE', dk, '-inf', cutoff, 'LIMIT', 0, max + skip)\n" \
"local gone = 0\n" \
"for _, id in ipairs(ids) do\n" \
"  if gone >= max then break end\n" \
"  local k = 'cv:job:' .. id\n" \
"  if redis.call('HGET', k, 'held') ~= '1' then\n" \
"    redis.call('DEL', k)\n" \
"    redis.call('ZREM', 'cv:dead', id); redis.call('ZREM', dk, id)\n" \
"    gone = gone + 1\n" \
"  end\n" \
"end\n" \
"if gone > 0 then redis.call('HINCRBY', 'cv:stats:' .. typ, 'expired', gone) end\n" \
"return gone\n"

/* The held mark goes once a reconciler saw the job's effects settled. ARGV: id. */
#define JSTORE_LUA_DEAD_UNHOLD \
"redis.call('SREM', 'cv:held', ARGV[1])\n" \
"redis.call('HDEL', 'cv:job:' .. ARGV[1], 'held')\n" \
"return 1\n"

/* A lease on a fleet-wide duty. ARGV: key, owner, ttl_ms. Returns 1 when owner
 * holds it (taken or renewed), 0 when somebody else does. */
#define JSTORE_LUA_LEASE \
"local k, owner, ttl = 'cv:lease:' .. ARGV[1], ARGV[2], ARGV[3]\n" \
"if redis.call('SET', k, owner, 'NX', 'PX', ttl) then return 1 end\n" \
"if redis.call('GET', k) == owner then redis.call('PEXPIRE', k, ttl); return 1 end\n" \
"return 0\n"

/* Dead-letter listing. ARGV: type ('' = all), limit. Returns HGETALL arrays
 * (each with its id: a lean status hash holds none). */
#define JSTORE_LUA_DEAD_LIST \
"local key = 'cv:dead'\n" \
"if ARGV[1] ~= '' then key = 'cv:dead:' .. ARGV[1] end\n" \
"local out = {}\n" \
"for _, id in ipairs(redis.call('ZREVRANGE', key, 0, tonumber(ARGV[2]) - 1)) do\n" \
"  local h = redis.call('HGETALL', 'cv:job:' .. id)\n" \
"  if #h > 0 then h[#h+1] = 'id'; h[#h+1] = id; out[#out+1] = h end\n" \
"end\n" \
"return out\n"

/* A page of dead letters, newest first, for paging through the whole set (bulk
 * replay, --since). ARGV: type ('' = all), limit, before ('' = from the newest,
 * else the cursor of the previous page: only entries scored below it), since
 * ('' = no bound, else the lowest score to include: ms * 1000). Returns
 * {cursor, HGETALL arrays...}: cursor is the score of the last entry looked at
 * when the page was full (ask again with it), else ''. Entries whose status
 * hash is gone are skipped but still move the cursor. */
#define JSTORE_LUA_DEAD_PAGE \
"local key = 'cv:dead'\n" \
"if ARGV[1] ~= '' then key = 'cv:dead:' .. ARGV[1] end\n" \
"local max, min, lim = '+inf', '-inf', tonumber(ARGV[2])\n" \
"if ARGV[3] ~= '' then max = '(' .. ARGV[3] end\n" \
"if ARGV[4] ~= '' then min = ARGV[4] end\n" \
"local r = redis.call('ZREVRANGEBYSCORE', key, max, min, 'WITHSCORES', 'LIMIT', 0, lim)\n" \
"local out = {''}\n" \
"for i = 1, #r, 2 do\n" \
"  local h = redis.call('HGETALL', 'cv:job:' .. r[i])\n" \
"  if #h > 0 then h[#h+1] = 'id'; h[#h+1] = r[i]; out[#out+1] = h end\n" \
"end\n" \
"if #r == 2 * lim then out[1] = r[#r] end\n" \
"return out\n"

/* Live workers. ARGV: now, alive_ms. Returns HGETALL arrays. */
#define JSTORE_LUA_WORKERS \
"local now, alive = tonumber(ARGV[1]), tonumber(ARGV[2])\n" \
"redis.call('ZREMRANGEBYSCORE', 'cv:workers', '-inf', now - 86400000)\n" \
"local out = {}\n" \
"for _, name in ipairs(redis.call('ZRANGEBYSCORE', 'cv:workers', now - alive, '+inf')) do\n" \
"  local h = redis.call('HGETALL', 'cv:worker:' .. name)\n" \
"  if #h > 0 then out[#out+1] = h end\n" \
"end\n" \
"return out\n"

/* Counters per type. Returns {type, HGETALL} pairs. */
#define JSTORE_LUA_COUNTERS \
"local out = {}\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  out[#out+1] = {typ, redis.call('HGETALL', 'cv:stats:' .. typ)}\n" \
"end\n" \
"return out\n"

#endif
