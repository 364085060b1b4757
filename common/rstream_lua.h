/* rstream_lua.h - the Lua scripts behind the Redis Streams broker.
 *
 * Keys (one Redis, not cluster-safe: scripts compute key names):
 *   cv:types               set of job types ever published
 *   cv:q:<type>            stream of deliveries (fields: id, a = attempt); group "cv"
 *   cv:job:<id>            hash: the envelope and status (state, attempt, epoch, ...)
 *   cv:delayed:<type>      zset id -> due time (ms): scheduled jobs and retries
 *   cv:dead, cv:dead:<type> zset id -> time it ended (ms * 1000 + a sequence, so
 *                          that order holds within a millisecond): failed and dead jobs
 *   cv:idem:<type>:<producer>:<key>  string -> id of the producer's first job with
 *                          that idempotency key
 *   cv:stats:<type>        hash of counters: enqueued succeeded failed retried dead
 *   cv:workers             zset name -> last heartbeat (ms); cv:worker:<name> hash
 * Every script runs atomically, so many producers and workers can call them at once. */
#ifndef CV_RSTREAM_LUA_H
#define CV_RSTREAM_LUA_H

/* ARGV: now, idem_ttl_s, n, then n x (id type payload max_attempts created_ms
 * not_before_ms idem_key tp producer). Returns a flat array: id, dup per job,
 * dup 0 = published, 1 = a duplicate (id is the earlier job: same idempotency
 * key of the same producer, or a job with this id, type and producer exists
 * already), 2 = a conflict (a job with this id exists with another type or
 * producer; nothing written). Every publish is idempotent by job id: a retry
 * of a publish whose outcome was unknown cannot enqueue twice, even when the
 * two calls arrive in either order. */
#define RSTREAM_LUA_PUBLISH \
"local now, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local out, seen = {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local b = 3 + i * 9\n" \
"  local id, typ, payload, maxa = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n" \
"  local created, nb, idem, tp = ARGV[b+5], tonumber(ARGV[b+6]), ARGV[b+7], ARGV[b+8]\n" \
"  local pr = ARGV[b+9]\n" \
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
"  else\n" \
"    if ik then redis.call('SET', ik, id, 'EX', ttl) end\n" \
"    if not seen[typ] then\n" \
"      seen[typ] = 0\n" \
"      if redis.call('SADD', 'cv:types', typ) == 1 then\n" \
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
"    if state == 'scheduled' then\n" \
"      redis.call('ZADD', 'cv:delayed:' .. typ, nb, id)\n" \
"    else\n" \
"      redis.call('XADD', 'cv:q:' .. typ, '*', 'id', id)\n" \
"    end\n" \
"    seen[typ] = seen[typ] + 1\n" \
"    out[#out+1] = id; out[#out+1] = 0\n" \
"  end\n" \
"end\n" \
"for typ, c in pairs(seen) do redis.call('HINCRBY', 'cv:stats:' .. typ, 'enqueued', c) end\n" \
"return out\n"

/* A new delivery. ARGV: now, consumer, type, n, then n x (msgid, id).
 * Returns per delivery: {msgid, id, attempt, max, payload, tp, epoch} or {msgid, id, 'skip'} for a job that already ended or is gone (its
 * entry is acked here). The epoch counts deliveries: it is the
 * fencing token every later write of this delivery must present. */
#define RSTREAM_LUA_START \
"local now, consumer, typ, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])\n" \
"local s = 'cv:q:' .. typ\n" \
"local out, gone = {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local msgid, id = ARGV[5 + i*2], ARGV[6 + i*2]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local st = redis.call('HMGET', k, 'state', 'attempt', 'max_attempts', 'payload', 'tp')\n" \
"  if (not st[1]) or st[1] == 'succeeded' or st[1] == 'failed' or st[1] == 'dead' then\n" \
"    gone[#gone+1] = msgid\n" \
"    out[#out+1] = {msgid, id, 'skip'}\n" \
"  else\n" \
"    local epoch = redis.call('HINCRBY', k, 'epoch', 1)\n" \
"    redis.call('HSET', k, 'state', 'running', 'started_ms', now, 'updated_ms', now,\n" \
"      'worker', consumer)\n" \
"    out[#out+1] = {msgid, id, st[2], st[3], st[4], st[5], epoch}\n" \
"  end\n" \
"end\n" \
"if #gone > 0 then\n" \
"  redis.call('XACK', s, 'cv', unpack(gone))\n" \
"end\n" \
"return out\n"

/* Settle deliveries. ARGV: now, status_ttl_s, n, dead_max, then n x (id type
 * msgid epoch outcome delay_ms error). The dead-letter set keeps the dead_max
 * newest jobs: older ones are dropped with their status. outcome: ack retry fail dead. Returns per delivery
 * 'ok', 'fenced' or 'gone'. A fenced delivery writes nothing, not even its ack:
 * the entry belongs to the newer delivery. Acks and counters are gathered and
 * written once per stream at the end. Acked entries are not deleted one by one
 * (XDEL costs more than the rest of a settle): the promoter trims each stream
 * below its oldest unsettled entry. */
#define RSTREAM_LUA_SETTLE \
"local now, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local dead_max = tonumber(ARGV[4])\n" \
"local out, acks, stats, buried = {}, {}, {}, 0\n" \
"local function count(typ, what)\n" \
"  local t = stats[typ]\n" \
"  if not t then t = {}; stats[typ] = t end\n" \
"  t[what] = (t[what] or 0) + 1\n" \
"end\n" \
"for i = 0, n - 1 do\n" \
"  local b = 4 + i * 7\n" \
"  local id, typ, msgid, epoch = ARGV[b+1], ARGV[b+2], ARGV[b+3], ARGV[b+4]\n" \
"  local what, delay, err = ARGV[b+5], tonumber(ARGV[b+6]), ARGV[b+7]\n" \
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
"      redis.call('HSET', k, 'state', 'succeeded', 'finished_ms', now, 'updated_ms', now)\n" \
"      redis.call('EXPIRE', k, ttl)\n" \
"      count(typ, 'succeeded')\n" \
"      out[#out+1] = 'ok'\n" \
"    elseif what == 'retry' then\n" \
"      local due = now + delay\n" \
"      redis.call('HINCRBY', k, 'attempt', 1)\n" \
"      redis.call('HSET', k, 'state', 'retrying', 'last_error', err, 'not_before_ms', due,\n" \
"        'updated_ms', now)\n" \
"      redis.call('ZADD', 'cv:delayed:' .. typ, due, id)\n" \
"      count(typ, 'retried')\n" \
"      out[#out+1] = 'ok'\n" \
"    else\n" \
"      local state = 'dead'\n" \
"      if what == 'fail' then state = 'failed' end\n" \
"      redis.call('HSET', k, 'state', state, 'last_error', err, 'finished_ms', now,\n" \
"        'updated_ms', now)\n" \
"      local at = now * 1000 + redis.call('INCR', 'cv:dead:seq') % 1000\n" \
"      redis.call('ZADD', 'cv:dead', at, id); redis.call('ZADD', 'cv:dead:' .. typ, at, id)\n" \
"      buried = buried + 1\n" \
"      count(typ, state)\n" \
"      out[#out+1] = 'ok'\n" \
"    end\n" \
"  end\n" \
"end\n" \
"for typ, a in pairs(acks) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  redis.call('XACK', s, 'cv', unpack(a))\n" \
"end\n" \
"for typ, t in pairs(stats) do\n" \
"  for what, c in pairs(t) do redis.call('HINCRBY', 'cv:stats:' .. typ, what, c) end\n" \
"end\n" \
"if buried > 0 then\n" \
"  local over = redis.call('ZCARD', 'cv:dead') - dead_max\n" \
"  if over > 0 then\n" \
"    local old = redis.call('ZPOPMIN', 'cv:dead', over)\n" \
"    for i = 1, #old, 2 do\n" \
"      local k = 'cv:job:' .. old[i]\n" \
"      local typ = redis.call('HGET', k, 'type')\n" \
"      if typ then redis.call('ZREM', 'cv:dead:' .. typ, old[i]) end\n" \
"      redis.call('DEL', k)\n" \
"    end\n" \
"  end\n" \
"end\n" \
"return out\n"

/* Move due delayed jobs to their streams, and trim each stream below its
 * oldest entry that is not settled yet (the oldest pending one, else the first
 * one not delivered): everything older is acked. Trimming is approximate (~),
 * whole nodes at a time, so it costs next to nothing. ARGV: now, max. Returns
 * the number of jobs moved. */
#define RSTREAM_LUA_PROMOTE \
"local now, max = ARGV[1], tonumber(ARGV[2])\n" \
"local moved = 0\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  if moved < max then\n" \
"    local dk = 'cv:delayed:' .. typ\n" \
"    local ids = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, max - moved)\n" \
"    for _, id in ipairs(ids) do\n" \
"      redis.call('ZREM', dk, id)\n" \
"      local k = 'cv:job:' .. id\n" \
"      if redis.call('EXISTS', k) == 1 then\n" \
"        redis.call('XADD', s, '*', 'id', id)\n" \
"        redis.call('HSET', k, 'state', 'queued', 'updated_ms', now)\n" \
"      end\n" \
"      moved = moved + 1\n" \
"    end\n" \
"  end\n" \
"  local ok, p = pcall(redis.call, 'XPENDING', s, 'cv')\n" \
"  if ok then\n" \
"    local keep = p[2]\n" \
"    if not keep then\n" \
"      local last = '0-0'\n" \
"      for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n" \
"        for i = 1, #g, 2 do if g[i] == 'last-delivered-id' then last = g[i+1] end end\n" \
"      end\n" \
"      local nx = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)\n" \
"      if nx[1] then keep = nx[1][1] else keep = '(' .. last end\n" \
"    end\n" \
"    if string.sub(keep, 1, 1) == '(' then\n" \
"      local ms, seq = string.match(keep, '^%((%d+)-(%d+)$')\n" \
"      keep = ms .. '-' .. (tonumber(seq) + 1)\n" \
"    end\n" \
"    redis.call('XTRIM', s, 'MINID', '~', keep)\n" \
"  end\n" \
"end\n" \
"return moved\n"

/* Replay a failed or dead job. ARGV: id, now. Returns 'ok', 'not_found' or 'conflict'. */
#define RSTREAM_LUA_DEAD_RETRY \
"local id, now = ARGV[1], ARGV[2]\n" \
"local k = 'cv:job:' .. id\n" \
"local st = redis.call('HMGET', k, 'state', 'type')\n" \
"if not st[1] then return 'not_found' end\n" \
"if st[1] ~= 'dead' and st[1] ~= 'failed' then return 'conflict' end\n" \
"redis.call('HSET', k, 'state', 'queued', 'attempt', 1, 'updated_ms', now, 'not_before_ms', 0)\n" \
"redis.call('HDEL', k, 'finished_ms')\n" \
"redis.call('PERSIST', k)\n" \
"redis.call('ZREM', 'cv:dead', id); redis.call('ZREM', 'cv:dead:' .. st[2], id)\n" \
"if redis.call('SADD', 'cv:types', st[2]) == 1 then\n" \
"  pcall(redis.call, 'XGROUP', 'CREATE', 'cv:q:' .. st[2], 'cv', '0', 'MKSTREAM')\n" \
"end\n" \
"redis.call('XADD', 'cv:q:' .. st[2], '*', 'id', id)\n" \
"return 'ok'\n"

/* Dead-letter listing. ARGV: type ('' = all), limit. Returns HGETALL arrays. */
#define RSTREAM_LUA_DEAD_LIST \
"local key = 'cv:dead'\n" \
"if ARGV[1] ~= '' then key = 'cv:dead:' .. ARGV[1] end\n" \
"local out = {}\n" \
"for _, id in ipairs(redis.call('ZREVRANGE', key, 0, tonumber(ARGV[2]) - 1)) do\n" \
"  local h = redis.call('HGETALL', 'cv:job:' .. id)\n" \
"  if #h > 0 then out[#out+1] = h end\n" \
"end\n" \
"return out\n"

/* Queue statistics. ARGV: none. Returns per type {type, depth (not yet
 * delivered), pending, consumers, scheduled, dead, oldest_ms}. */
#define RSTREAM_LUA_QUEUES \
"local out = {}\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  local pending, consumers, last, lag = 0, 0, '0-0', false\n" \
"  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', s)\n" \
"  if ok then\n" \
"    for _, g in ipairs(groups) do\n" \
"      local m = {}\n" \
"      for i = 1, #g, 2 do m[g[i]] = g[i+1] end\n" \
"      if m['name'] == 'cv' then\n" \
"        pending, consumers, last = m['pending'], m['consumers'], m['last-delivered-id']\n" \
"        lag = m['lag']\n" \
"      end\n" \
"    end\n" \
"  end\n" \
"  local oldest = 0\n" \
"  if pending > 0 then\n" \
"    local p = redis.call('XPENDING', s, 'cv')\n" \
"    if p[2] then oldest = tonumber(string.match(p[2], '^(%d+)')) end\n" \
"  end\n" \
"  local nx = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)\n" \
"  if nx[1] then\n" \
"    local ts = tonumber(string.match(nx[1][1], '^(%d+)'))\n" \
"    if oldest == 0 or ts < oldest then oldest = ts end\n" \
"  end\n" \
"  if not lag then\n" \
"    lag = #redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 100000)\n" \
"  end\n" \
"  out[#out+1] = {typ, lag, pending, consumers, redis.call('ZCARD', 'cv:delayed:' .. typ),\n" \
"    redis.call('ZCARD', 'cv:dead:' .. typ), oldest}\n" \
"end\n" \
"return out\n"

/* Live workers. ARGV: now, alive_ms. Returns HGETALL arrays. */
#define RSTREAM_LUA_WORKERS \
"local now, alive = tonumber(ARGV[1]), tonumber(ARGV[2])\n" \
"redis.call('ZREMRANGEBYSCORE', 'cv:workers', '-inf', now - 86400000)\n" \
"local out = {}\n" \
"for _, name in ipairs(redis.call('ZRANGEBYSCORE', 'cv:workers', now - alive, '+inf')) do\n" \
"  local h = redis.call('HGETALL', 'cv:worker:' .. name)\n" \
"  if #h > 0 then out[#out+1] = h end\n" \
"end\n" \
"return out\n"

/* A worker leaves. ARGV: name. Forget its heartbeat and remove it from every
 * consumer group where it holds no pending delivery (one with pending
 * deliveries stays until they are reclaimed: deleting it would drop them). */
#define RSTREAM_LUA_WORKER_GONE \
"local name = ARGV[1]\n" \
"redis.call('ZREM', 'cv:workers', name)\n" \
"redis.call('DEL', 'cv:worker:' .. name)\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  local ok, p = pcall(redis.call, 'XPENDING', s, 'cv', '-', '+', 1, name)\n" \
"  if ok and #p == 0 then pcall(redis.call, 'XGROUP', 'DELCONSUMER', s, 'cv', name) end\n" \
"end\n" \
"return 1\n"

/* Counters per type. Returns {type, HGETALL} pairs. */
#define RSTREAM_LUA_COUNTERS \
"local out = {}\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  out[#out+1] = {typ, redis.call('HGETALL', 'cv:stats:' .. typ)}\n" \
"end\n" \
"return out\n"

#endif
