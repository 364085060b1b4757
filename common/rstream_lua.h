/* rstream_lua.h - the Lua scripts of the Redis Streams transport that only it
 * needs (promote and trim, consumer GC, queue statistics, a worker leaving).
 * Publish, start, settle and replay are shared with the Kafka transport and
 * live in jstore_lua.h: with mode 'q' they write the stream in the same atomic
 * step as the status.
 *
 * Keys (one Redis, not cluster-safe: scripts compute key names): the job-status
 * store's keys (jstore_lua.h: cv:types, cv:job:<id>, cv:delayed:<type>, cv:dead*,
 * cv:held, cv:idem:*, cv:stats:<type>, cv:workers), and
 *   cv:q:<type>            stream of jobs, group "cv": a lean entry carries the
 *                          envelope in its one field j (JSTORE_LUA_ENV_FN); one written
 *                          before the lean path only the field id. Finished entries
 *                          stay until retired with their statuses (retain, status TTL)
 * Every script runs atomically, so many producers and workers can call them at once. */
#ifndef CV_RSTREAM_LUA_H
#define CV_RSTREAM_LUA_H

#include "jstore_lua.h"     /* JSTORE_LUA_RETIRE_FN */

/* Move due delayed jobs to their streams, and retire what each type's
 * retention lets go (JSTORE_LUA_RETIRE_FN: beyond its retain count, or older
 * than the status TTL; never an unsettled entry, and never by another group's
 * position: an operator's tap is not ours to wait for). ARGV: now, max,
 * status_ttl_s, default retain, ncaps, ncaps x (type, retain). Returns the
 * number of jobs moved.
 *
 * A due job goes on the stream as a lean entry built from its status hash
 * (the settle of its retry, or its scheduled publish, wrote the envelope
 * there), whose epoch base is the hash's epoch; its status becomes queued. */
#define RSTREAM_LUA_PROMOTE \
JSTORE_LUA_RETIRE_FN \
JSTORE_LUA_ENV_FN \
"local now, max, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n" \
"local cap, caps = tonumber(ARGV[4]), {}\n" \
"for i = 0, tonumber(ARGV[5]) - 1 do caps[ARGV[6 + i * 2]] = tonumber(ARGV[7 + i * 2]) end\n" \
"local moved = 0\n" \
"for _, typ in ipairs(redis.call('SMEMBERS', 'cv:types')) do\n" \
"  local s = 'cv:q:' .. typ\n" \
"  if moved < max then\n" \
"    local dk = 'cv:delayed:' .. typ\n" \
"    local ids = redis.call('ZRANGEBYSCORE', dk, '-inf', now, 'LIMIT', 0, max - moved)\n" \
"    for _, id in ipairs(ids) do\n" \
"      redis.call('ZREM', dk, id)\n" \
"      local k = 'cv:job:' .. id\n" \
"      local h = redis.call('HMGET', k, 'type', 'payload', 'tp', 'attempt', 'max_attempts',\n" \
"        'epoch', 'created_ms')\n" \
"      if h[1] then\n" \
"        local m = redis.call('XADD', s, '*', 'j', env_join(id, h[4] or 1, h[5] or 1, h[6] or 0,\n" \
"          h[7] or now, h[3] or '', h[2] or '{}'))\n" \
"        redis.call('HSET', k, 'state', 'queued', 'updated_ms', now, 'm', m)\n" \
"      end\n" \
"      moved = moved + 1\n" \
"    end\n" \
"  end\n" \
"  retire(typ, now, ttl, caps[typ] or cap, 1000, false)\n" \
"end\n" \
"return moved\n"

/* Reclaim deliveries idle longer than the visibility timeout. ARGV: stream,
 * consumer, min_idle_ms, count. Returns {entries, counts}: the entries
 * XAUTOCLAIM moved to consumer, and each one's delivery count after the claim
 * (the lean fencing token, jstore_lua.h), or {'nogroup'}. They are counted
 * as reclaimed in cv:stats:<type> (the stream is cv:q:<type>). */
#define RSTREAM_LUA_RECLAIM \
"local s = ARGV[1]\n" \
"local ok, r = pcall(redis.call, 'XAUTOCLAIM', s, 'cv', ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])\n" \
"if not ok then\n" \
"  local msg = type(r) == 'table' and r.err or tostring(r)\n" \
"  if string.find(msg, 'NOGROUP') then return {'nogroup'} end\n" \
"  return redis.error_reply(msg)\n" \
"end\n" \
"local counts = {}\n" \
"for i, e in ipairs(r[2]) do\n" \
"  local p = redis.call('XPENDING', s, 'cv', e[1], e[1], 1)\n" \
"  counts[i] = (p[1] and p[1][4]) or 1\n" \
"end\n" \
"if #r[2] > 0 then\n" \
"  redis.call('HINCRBY', 'cv:stats:' .. string.sub(s, 6), 'reclaimed', #r[2])\n" \
"end\n" \
"return {r[2], counts}\n"

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
 * exactly; above that depth = min(lag, XLEN - pending, the unsettled jobs by
 * the type's counters - pending - delayed): the stream also keeps finished
 * entries (retention), so XLEN alone would count them as waiting. */
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
"  local c = redis.call('HMGET', 'cv:stats:' .. typ, 'enqueued', 'replayed', 'succeeded',\n" \
"    'failed', 'dead')\n" \
"  local function v(x) return tonumber(x) or 0 end\n" \
"  local live = v(c[1]) + v(c[2]) - v(c[3]) - v(c[4]) - v(c[5])\n" \
"  local waiting = live - pending - redis.call('ZCARD', 'cv:delayed:' .. typ)\n" \
"  if waiting < bound then bound = waiting end\n" \
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
