/* jstore_lua.h - the Lua scripts of the job-status store (jstore.c): the ones
 * that touch no transport's queue. Scripts that must change a queue and a status
 * together live with their transport (rstream_lua.h), under the same keys.
 *
 * Keys (one Redis, not cluster-safe: scripts compute key names):
 *   cv:types               set of job types ever published
 *   cv:job:<id>            hash: the envelope and status (state, attempt, epoch, ...);
 *                          se = the epoch of the last settled delivery (or of the
 *                          replay that began this life): epoch - se = deliveries that
 *                          never settled, the poison-job guard's count; held = 1 while a
 *                          dead job's effects may be unsettled
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

/* Publish. ARGV: mode, now, idem_ttl_s, n, then n x (id type payload
 * max_attempts created_ms not_before_ms idem_key tp producer key max_queued).
 * Returns a flat array: id, dup per job, dup 0 = published, 1 = a duplicate
 * (id is the earlier job: same idempotency key of the same producer, or a job
 * with this id, type and producer exists already), 2 = a conflict (a job with
 * this id exists with another type or producer; nothing written), 3 = refused
 * by backpressure (id is then the seconds to wait). Every publish is
 * idempotent by job id: a retry of a publish whose outcome was unknown cannot
 * enqueue twice, even when the two calls arrive in either order. Mode 'k':
 * a new queued job gets kq = 1 and enters cv:unproduced; the caller produces it.
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
"local mode, now, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n" \
"local streams = mode == 'q'\n" \
"local out, seen, want, full = {}, {}, {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local typ, bound = ARGV[4 + i * 11 + 2], tonumber(ARGV[4 + i * 11 + 11])\n" \
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
"  local b = 4 + i * 11\n" \
"  local id, typ, payload, maxa = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n" \
"  local created, nb, idem, tp = ARGV[b+5], tonumber(ARGV[b+6]), ARGV[b+7], ARGV[b+8]\n" \
"  local pr, key = ARGV[b+9], ARGV[b+10]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local prev, dup, ik = false, 1, false\n" \
"  if idem ~= '' then\n" \
"    ik = 'cv:idem:' .. typ .. ':' .. pr .. ':' .. idem\n" \
"    prev = redis.call('GET', ik)\n" \
"  end\n" \
"  if not prev then\n" \
"    local e = redis.call('HMGET', k, 'type', 'pr')\n" \
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
"    local state = 'queued'\n" \
"    if nb > now then state = 'scheduled' end\n" \
"    redis.call('HSET', k, 'id', id, 'type', typ, 'state', state, 'attempt', 1,\n" \
"      'max_attempts', maxa, 'created_ms', created, 'payload', payload, 'tp', tp, 'pr', pr)\n" \
"    if nb > 0 or idem ~= '' then\n" \
"      redis.call('HSET', k, 'not_before_ms', nb, 'idem', idem)\n" \
"    end\n" \
"    if not streams then redis.call('HSET', k, 'kk', key) end\n" \
"    if state == 'scheduled' then\n" \
"      redis.call('ZADD', 'cv:delayed:' .. typ, nb, id)\n" \
"    elseif streams then\n" \
"      redis.call('XADD', 'cv:q:' .. typ, '*', 'id', id)\n" \
"    else\n" \
"      redis.call('HSET', k, 'kq', 1); redis.call('ZADD', 'cv:unproduced', now, id)\n" \
"    end\n" \
"    seen[typ] = seen[typ] + 1\n" \
"    out[#out+1] = id; out[#out+1] = 0\n" \
"  end\n" \
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

/* Settle deliveries. ARGV: mode, now, status_ttl_s, n, then n x (id type
 * msgid epoch outcome delay_ms error held). outcome: ack retry defer fail
 * dead. Returns per delivery 'ok', 'fenced' or 'gone'. A fenced delivery
 * writes nothing, not even its ack: the entry belongs to the newer delivery.
 * Every settled delivery records its epoch as se (the poison-job guard counts
 * from there). defer is retry without spending an attempt (our own
 * infrastructure was down); mode 'q' puts a retry in cv:delayed, mode 'k'
 * leaves it to the consumer (not_before_ms says when). A failed or dead job
 * with held = 1 is listed in cv:held. Nothing here ever deletes a dead job.
 * Acks and counters are gathered and written once per stream at the end.
 * Acked entries are not deleted one by one (XDEL costs more than the rest of
 * a settle): the promoter trims each stream below its oldest unsettled entry. */
#define JSTORE_LUA_SETTLE \
"local mode, now, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n" \
"local streams = mode == 'q'\n" \
"local out, acks, stats = {}, {}, {}\n" \
"local function count(typ, what)\n" \
"  local t = stats[typ]\n" \
"  if not t then t = {}; stats[typ] = t end\n" \
"  t[what] = (t[what] or 0) + 1\n" \
"end\n" \
"for i = 0, n - 1 do\n" \
"  local b = 4 + i * 8\n" \
"  local id, typ, msgid, epoch = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n" \
"  local what, delay, err, held = ARGV[b+5], tonumber(ARGV[b+6]), ARGV[b+7], ARGV[b+8]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local cur = redis.call('HGET', k, 'epoch')\n" \
"  if cur and cur ~= epoch then\n" \
"    out[#out+1] = 'fenced'\n" \
"  else\n" \
"    local a = acks[typ]\n" \
"    if not a then a = {}; acks[typ] = a end\n" \
"    a[#a+1] = msgid\n" \
"    if not cur then\n" \
"      out[#out+1] = 'gone'\n" \
"    elseif what == 'ack' then\n" \
"      redis.call('HSET', k, 'state', 'succeeded', 'finished_ms', now, 'updated_ms', now,\n" \
"        'se', epoch)\n" \
"      redis.call('EXPIRE', k, ttl)\n" \
"      count(typ, 'succeeded')\n" \
"      out[#out+1] = 'ok'\n" \
"    elseif what == 'retry' or what == 'defer' then\n" \
"      local due = now + delay\n" \
"      if what == 'retry' then\n" \
"        redis.call('HINCRBY', k, 'attempt', 1)\n" \
"        count(typ, 'retried')\n" \
"      else\n" \
"        count(typ, 'deferred')\n" \
"      end\n" \
"      redis.call('HSET', k, 'state', 'retrying', 'last_error', err, 'not_before_ms', due,\n" \
"        'updated_ms', now, 'se', epoch)\n" \
"      if streams then redis.call('ZADD', 'cv:delayed:' .. typ, due, id) end\n" \
"      out[#out+1] = 'ok'\n" \
"    else\n" \
"      local state = 'dead'\n" \
"      if what == 'fail' then state = 'failed' end\n" \
"      redis.call('HSET', k, 'state', state, 'last_error', err, 'finished_ms', now,\n" \
"        'updated_ms', now, 'se', epoch)\n" \
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
"  for typ, a in pairs(acks) do redis.call('XACK', 'cv:q:' .. typ, 'cv', unpack(a)) end\n" \
"end\n" \
"for typ, t in pairs(stats) do\n" \
"  for what, c in pairs(t) do redis.call('HINCRBY', 'cv:stats:' .. typ, what, c) end\n" \
"end\n" \
"return out\n"

/* Replay a failed or dead job: a new life. The attempt count starts again at
 * 1 and se = the current epoch, so the poison-job guard counts this life's
 * deliveries only; the epoch itself keeps growing (fencing spans lives). The
 * held mark goes: the next settle says again whether effects are unsettled.
 * ARGV: mode, id, now. Returns {'ok', type, kk, kq} ('q': the job is on its
 * stream; 'k': the caller produces it with that key and kq), {'not_found'} or
 * {'conflict'}. */
#define JSTORE_LUA_DEAD_RETRY \
"local mode, id, now = ARGV[1], ARGV[2], ARGV[3]\n" \
"local k = 'cv:job:' .. id\n" \
"local st = redis.call('HMGET', k, 'state', 'type', 'epoch', 'kk')\n" \
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
"  redis.call('XADD', 'cv:q:' .. st[2], '*', 'id', id)\n" \
"else\n" \
"  kq = redis.call('HINCRBY', k, 'kq', 1)\n" \
"  redis.call('ZADD', 'cv:unproduced', now, id)\n" \
"end\n" \
"redis.call('HINCRBY', 'cv:stats:' .. st[2], 'replayed', 1)\n" \
"return {'ok', st[2], st[4] or '', kq}\n"

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

/* Dead-letter listing. ARGV: type ('' = all), limit. Returns HGETALL arrays. */
#define JSTORE_LUA_DEAD_LIST \
"local key = 'cv:dead'\n" \
"if ARGV[1] ~= '' then key = 'cv:dead:' .. ARGV[1] end\n" \
"local out = {}\n" \
"for _, id in ipairs(redis.call('ZREVRANGE', key, 0, tonumber(ARGV[2]) - 1)) do\n" \
"  local h = redis.call('HGETALL', 'cv:job:' .. id)\n" \
"  if #h > 0 then out[#out+1] = h end\n" \
"end\n" \
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
