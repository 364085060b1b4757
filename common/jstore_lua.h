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
 * Every script runs atomically, so many producers and workers can call them at once. */
#ifndef CV_JSTORE_LUA_H
#define CV_JSTORE_LUA_H

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
