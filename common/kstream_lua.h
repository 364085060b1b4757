/* kstream_lua.h - the Lua scripts only the Kafka transport needs. Publish,
 * start, settle and replay are shared with Redis Streams (jstore_lua.h, mode
 * 'k'); these keep the Redis side of what Kafka carries: which jobs are due to
 * be produced, and which were seen produced. Keys: jstore_lua.h's. */
#ifndef CV_KSTREAM_LUA_H
#define CV_KSTREAM_LUA_H

/* What to produce now. ARGV: now, max, grace_ms. Two sources, up to max each:
 * - due scheduled jobs of every type (cv:delayed:<type>): queued, kq + 1, into
 *   cv:unproduced;
 * - the sweep: jobs recorded in cv:unproduced longer than grace_ms ago (their
 *   producer died between the record and the delivery report, or the cluster
 *   was down): still queued, they get kq + 1 (any copy produced before is
 *   stale from now on) and a new time; no longer queued, they leave the set.
 * Returns a flat array: id, type, key, kq per job to produce. Any number of
 * workers may run it at once: each job is handed to one of them. */
#define KSTREAM_LUA_DUE \
"local now, max, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local out, moved = {}, 0\n" \
"local function hand(id, typ, key, k)\n" \
"  local kq = redis.call('HINCRBY', k, 'kq', 1)\n" \
"  redis.call('ZADD', 'cv:unproduced', now, id)\n" \
"  out[#out+1] = id; out[#out+1] = typ; out[#out+1] = key or ''; out[#out+1] = kq\n" \
"end\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  if moved >= max then break end\n" \
"  local dk = 'cv:delayed:' .. typ\n" \
"  for _, id in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, max - moved)) do\n" \
"    redis.call('ZREM', dk, id)\n" \
"    local k = 'cv:job:' .. id\n" \
"    if redis.call('EXISTS', k) == 1 then\n" \
"      redis.call('HSET', k, 'state', 'queued', 'updated_ms', now)\n" \
"      hand(id, typ, redis.call('HGET', k, 'kk'), k)\n" \
"    end\n" \
"    moved = moved + 1\n" \
"  end\n" \
"end\n" \
"for _, id in ipairs(redis.call('ZRANGEBYSCORE', 'cv:unproduced', '-inf', now - grace,\n" \
"    'LIMIT', 0, max)) do\n" \
"  local k = 'cv:job:' .. id\n" \
"  local h = redis.call('HMGET', k, 'state', 'type', 'kk')\n" \
"  if h[1] == 'queued' then\n" \
"    hand(id, h[2], h[3], k)\n" \
"  else\n" \
"    redis.call('ZREM', 'cv:unproduced', id)\n" \
"  end\n" \
"end\n" \
"return out\n"

/* Delivery reports came back: these copies are written. ARGV: n, then n x
 * (id, kq). A job leaves cv:unproduced only when kq is still its latest (a
 * sweep that produced it again since must see its own copy written). */
#define KSTREAM_LUA_PRODUCED \
"local n = tonumber(ARGV[1])\n" \
"for i = 0, n - 1 do\n" \
"  local id, kq = ARGV[2 + i*2], ARGV[3 + i*2]\n" \
"  if redis.call('HGET', 'cv:job:' .. id, 'kq') == kq then\n" \
"    redis.call('ZREM', 'cv:unproduced', id)\n" \
"  end\n" \
"end\n" \
"return n\n"

/* Queue statistics kept in Redis. ARGV: now, alive_ms. Returns per type
 * {type, scheduled, dead, consumers (live workers that run the type),
 * unproduced (recorded, not yet seen produced)}. Lag comes from Kafka. */
#define KSTREAM_LUA_QUEUES \
"local now, alive = tonumber(ARGV[1]), tonumber(ARGV[2])\n" \
"local runs = {}\n" \
"for _, name in ipairs(redis.call('ZRANGEBYSCORE', 'cv:workers', now - alive, '+inf')) do\n" \
"  runs[#runs+1] = ',' .. (redis.call('HGET', 'cv:worker:' .. name, 'types') or '') .. ','\n" \
"end\n" \
"local unp = {}\n" \
"for _, id in ipairs(redis.call('ZRANGE', 'cv:unproduced', 0, 999)) do\n" \
"  local t = redis.call('HGET', 'cv:job:' .. id, 'type')\n" \
"  if t then unp[t] = (unp[t] or 0) + 1 end\n" \
"end\n" \
"local out = {}\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local c = 0\n" \
"  for _, r in ipairs(runs) do\n" \
"    if string.find(r, ',' .. typ .. ',', 1, true) then c = c + 1 end\n" \
"  end\n" \
"  out[#out+1] = {typ, redis.call('ZCARD', 'cv:delayed:' .. typ),\n" \
"    redis.call('ZCARD', 'cv:dead:' .. typ), c, unp[typ] or 0}\n" \
"end\n" \
"return out\n"

#endif
