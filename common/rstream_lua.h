/* rstream_lua.h - the Lua scripts of the Redis Streams transport: whatever
 * touches a stream stays here, atomic with the status writes that go with it.
 *
 * Keys (one Redis, not cluster-safe: scripts compute key names): the job-status
 * store's keys (jstore_lua.h: cv:types, cv:job:<id>, cv:delayed:<type>, cv:dead*,
 * cv:held, cv:idem:*, cv:stats:<type>, cv:workers), and
 *   cv:q:<type>            stream of deliveries (fields: id, a = attempt); group "cv"
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
 * Returns per delivery: {msgid, id, attempt, max, payload, tp, epoch, unsettled}
 * or {msgid, id, 'skip'} for a job that already ended or is gone (its entry is
 * acked here). The epoch counts deliveries over the job's whole history: it is
 * the fencing token every later write of this delivery must present.
 * unsettled = deliveries since the last settle of this life, this one included. */
#define RSTREAM_LUA_START \
"local now, consumer, typ, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])\n" \
"local s = 'cv:q:' .. typ\n" \
"local out, gone = {}, {}\n" \
"for i = 0, n - 1 do\n" \
"  local msgid, id = ARGV[5 + i*2], ARGV[6 + i*2]\n" \
"  local k = 'cv:job:' .. id\n" \
"  local st = redis.call('HMGET', k, 'state', 'attempt', 'max_attempts', 'payload', 'tp', 'se')\n" \
"  if (not st[1]) or st[1] == 'succeeded' or st[1] == 'failed' or st[1] == 'dead' then\n" \
"    gone[#gone+1] = msgid\n" \
"    out[#out+1] = {msgid, id, 'skip'}\n" \
"  else\n" \
"    local epoch = redis.call('HINCRBY', k, 'epoch', 1)\n" \
"    redis.call('HSET', k, 'state', 'running', 'started_ms', now, 'updated_ms', now,\n" \
"      'worker', consumer)\n" \
"    out[#out+1] = {msgid, id, st[2], st[3], st[4], st[5], epoch, epoch - (tonumber(st[6]) or 0)}\n" \
"  end\n" \
"end\n" \
"if #gone > 0 then\n" \
"  redis.call('XACK', s, 'cv', unpack(gone))\n" \
"end\n" \
"return out\n"

/* Settle deliveries. ARGV: now, status_ttl_s, n, then n x (id type msgid
 * epoch outcome delay_ms error held). outcome: ack retry defer fail dead.
 * Returns per delivery 'ok', 'fenced' or 'gone'. A fenced delivery writes
 * nothing, not even its ack: the entry belongs to the newer delivery. Every
 * settled delivery records its epoch as se (the poison-job guard counts from
 * there). defer is retry without spending an attempt (our own infrastructure
 * was down). A failed or dead job with held = 1 is listed in cv:held. Nothing
 * here ever deletes a dead job. Acks and counters are gathered and written once
 * per stream at the end. Acked entries are not deleted one by one (XDEL costs
 * more than the rest of a settle): the promoter trims each stream below its
 * oldest unsettled entry. */
#define RSTREAM_LUA_SETTLE \
"local now, ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local out, acks, stats = {}, {}, {}\n" \
"local function count(typ, what)\n" \
"  local t = stats[typ]\n" \
"  if not t then t = {}; stats[typ] = t end\n" \
"  t[what] = (t[what] or 0) + 1\n" \
"end\n" \
"for i = 0, n - 1 do\n" \
"  local b = 3 + i * 8\n" \
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
"      redis.call('ZADD', 'cv:delayed:' .. typ, due, id)\n" \
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
"for typ, a in pairs(acks) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  redis.call('XACK', s, 'cv', unpack(a))\n" \
"end\n" \
"for typ, t in pairs(stats) do\n" \
"  for what, c in pairs(t) do redis.call('HINCRBY', 'cv:stats:' .. typ, what, c) end\n" \
"end\n" \
"return out\n"

/* Move due delayed jobs to their streams, and trim each stream below its
 * oldest entry that is not settled yet by OUR group "cv" (the oldest pending
 * one, else the first one it has not read): everything older is acked. Other
 * groups on the stream (an operator's tap) are not ours to wait for, and their
 * positions must never decide what we trim. Trimming is approximate (~), whole
 * nodes at a time, so it costs next to nothing. ARGV: now, max. Returns the
 * number of jobs moved. */
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
"      local last = false\n" \
"      for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n" \
"        local name, ld = nil, nil\n" \
"        for i = 1, #g, 2 do\n" \
"          if g[i] == 'name' then name = g[i+1] elseif g[i] == 'last-delivered-id' then ld = g[i+1] end\n" \
"        end\n" \
"        if name == 'cv' then last = ld end\n" \
"      end\n" \
"      if last then\n" \
"        local nx = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)\n" \
"        if nx[1] then keep = nx[1][1] else keep = '(' .. last end\n" \
"      end\n" \
"    end\n" \
"    if keep and string.sub(keep, 1, 1) == '(' then\n" \
"      local ms, seq = string.match(keep, '^%((%d+)-(%d+)$')\n" \
"      keep = ms .. '-' .. (tonumber(seq) + 1)\n" \
"    end\n" \
"    if keep then redis.call('XTRIM', s, 'MINID', '~', keep) end\n" \
"  end\n" \
"end\n" \
"return moved\n"

/* Replay a failed or dead job: a new life. The attempt count starts again at
 * 1 and se = the current epoch, so the poison-job guard counts this life's
 * deliveries only; the epoch itself keeps growing (fencing spans lives). The
 * held mark goes: the next settle says again whether effects are unsettled.
 * ARGV: id, now. Returns 'ok', 'not_found' or 'conflict'. */
#define RSTREAM_LUA_DEAD_RETRY \
"local id, now = ARGV[1], ARGV[2]\n" \
"local k = 'cv:job:' .. id\n" \
"local st = redis.call('HMGET', k, 'state', 'type', 'epoch')\n" \
"if not st[1] then return 'not_found' end\n" \
"if st[1] ~= 'dead' and st[1] ~= 'failed' then return 'conflict' end\n" \
"redis.call('HSET', k, 'state', 'queued', 'attempt', 1, 'updated_ms', now, 'not_before_ms', 0,\n" \
"  'se', st[3] or 0)\n" \
"redis.call('HDEL', k, 'finished_ms', 'held')\n" \
"redis.call('SREM', 'cv:held', id)\n" \
"redis.call('PERSIST', k)\n" \
"redis.call('ZREM', 'cv:dead', id); redis.call('ZREM', 'cv:dead:' .. st[2], id)\n" \
"if redis.call('SADD', 'cv:types', st[2]) == 1 then\n" \
"  pcall(redis.call, 'XGROUP', 'CREATE', 'cv:q:' .. st[2], 'cv', '0', 'MKSTREAM')\n" \
"end\n" \
"redis.call('XADD', 'cv:q:' .. st[2], '*', 'id', id)\n" \
"redis.call('HINCRBY', 'cv:stats:' .. st[2], 'replayed', 1)\n" \
"return 'ok'\n"

/* Consumers of workers that died without leaving (SIGKILL): no pending entry,
 * no read for idle_ms, no heartbeat for alive_ms. ARGV: now, idle_ms,
 * alive_ms. Returns how many were removed. */
#define RSTREAM_LUA_GC_CONSUMERS \
"local now, idle, alive = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local removed = 0\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  local ok, cs = pcall(redis.call, 'XINFO', 'CONSUMERS', s, 'cv')\n" \
"  if ok then\n" \
"    for _, c in ipairs(cs) do\n" \
"      local m = {}\n" \
"      for i = 1, #c, 2 do m[c[i]] = c[i+1] end\n" \
"      if m['pending'] == 0 and m['idle'] > idle then\n" \
"        local hb = redis.call('ZSCORE', 'cv:workers', m['name'])\n" \
"        if (not hb) or tonumber(hb) < now - alive then\n" \
"          redis.call('XGROUP', 'DELCONSUMER', s, 'cv', m['name'])\n" \
"          removed = removed + 1\n" \
"        end\n" \
"      end\n" \
"    end\n" \
"  end\n" \
"end\n" \
"return removed\n"

/* Queue statistics. ARGV: none. Returns per type {type, depth (not yet
 * delivered), pending, consumers, scheduled, dead, oldest_ms}.
 * Depth: the group's lag is a Redis estimate that can stay wrong for good
 * (after a restart from an AOF with a trimmed stream it was seen 173,947 with
 * an empty stream). The entries after our position are at most XLEN - pending
 * (the rest are acked, awaiting the trim). So: up to 1000 of them are counted
 * exactly; above that depth = min(lag, XLEN - pending), which converges as the
 * promoter trims. */
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
"  local bound = redis.call('XLEN', s) - pending\n" \
"  if bound < 0 then bound = 0 end\n" \
"  if bound <= 1000 then\n" \
"    lag = #redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1001)\n" \
"  elseif (not lag) or lag > bound then\n" \
"    lag = bound\n" \
"  end\n" \
"  out[#out+1] = {typ, lag, pending, consumers, redis.call('ZCARD', 'cv:delayed:' .. typ),\n" \
"    redis.call('ZCARD', 'cv:dead:' .. typ), oldest}\n" \
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

#endif
