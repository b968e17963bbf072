package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure the Redis store.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port/db (from the environment in config).
	URL string
	// Prefix of every key sluice writes (default "sluice:cache:").
	Prefix string
	// EventsMax bounds the stream of changes replicas follow (default 100,000).
	EventsMax int64
	// Now is the clock for expiry checks (default time.Now); Redis expires entries
	// itself too (PX).
	Now func() time.Time
}

// Redis is a store several gateway replicas share. Entries are Redis strings under
// "<prefix>e:<tenant>:<model>:<digest>" (hex hash prefixes, so a tenant's or a model's
// entries are found by pattern) with the entry's TTL; every put, delete and purge is
// appended to the stream "<prefix>events", which each replica follows (Watch) to keep
// its semantic index in step. The size bound is Redis's own: run it with maxmemory
// and an allkeys-lru policy.
type Redis struct {
	c      *redis.Client
	o      RedisOptions
	events string
}

var (
	_ Store   = (*Redis)(nil)
	_ Watcher = (*Redis)(nil)
)

// OpenRedis connects to the server at o.URL and checks that it answers.
func OpenRedis(ctx context.Context, o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("cache: redis url: %w", err)
	}
	if o.Prefix == "" {
		o.Prefix = "sluice:cache:"
	}
	if o.EventsMax <= 0 {
		o.EventsMax = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("cache: redis at %s: %w", opt.Addr, err)
	}
	return &Redis{c: c, o: o, events: o.Prefix + "events"}, nil
}

func (r *Redis) key(k Key) string {
	b := make([]byte, 0, len(r.o.Prefix)+2+8+1+8+1+48)
	b = append(b, r.o.Prefix...)
	b = append(b, "e:"...)
	b = hex.AppendEncode(b, k[0:4])
	b = append(b, ':')
	b = hex.AppendEncode(b, k[4:8])
	b = append(b, ':')
	b = hex.AppendEncode(b, k[8:])
	return string(b)
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, k Key) (*Entry, error) {
	v, err := r.c.Get(ctx, r.key(k)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &Entry{}
	if err := e.UnmarshalBinary(v); err != nil {
		return nil, err
	}
	if !e.Expires.IsZero() && !r.o.Now().Before(e.Expires) {
		return nil, nil
	}
	return e, nil
}

// Put implements Store: the entries and their events in one pipeline.
func (r *Redis) Put(ctx context.Context, es ...*Entry) error {
	now := r.o.Now()
	p := r.c.Pipeline()
	n := 0
	for _, e := range es {
		ttl := time.Duration(0)
		if !e.Expires.IsZero() {
			if ttl = e.Expires.Sub(now); ttl <= 0 {
				continue
			}
		}
		v, _ := e.MarshalBinary()
		p.Set(ctx, r.key(e.Key), v, ttl)
		if e.Question != "" {
			// Put events only feed other replicas' semantic indexes: an entry without
			// its question (matched exactly only) has nothing to index.
			p.XAdd(ctx, &redis.XAddArgs{Stream: r.events, MaxLen: r.o.EventsMax, Approx: true,
				Values: []any{"op", "put", "key", hex.EncodeToString(e.Key[:])}})
		}
		n++
	}
	if n == 0 {
		return nil
	}
	_, err := p.Exec(ctx)
	return err
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, k Key) error {
	p := r.c.Pipeline()
	p.Del(ctx, r.key(k))
	p.XAdd(ctx, &redis.XAddArgs{Stream: r.events, MaxLen: r.o.EventsMax, Approx: true,
		Values: []any{"op", "del", "key", hex.EncodeToString(k[:])}})
	_, err := p.Exec(ctx)
	return err
}

func (r *Redis) pattern(tenant, model string) string {
	t, m := "*", "*"
	if tenant != "" {
		t = fmt.Sprintf("%08x", tenantPrefix(tenant))
	}
	if model != "" {
		m = fmt.Sprintf("%08x", tenantPrefix(model))
	}
	return r.o.Prefix + "e:" + t + ":" + m + ":*"
}

// Purge implements Store: the entries whose keys carry the tenant's and the model's
// hash prefixes (checked against the decoded entry), then an event for the replicas.
func (r *Redis) Purge(ctx context.Context, tenant, model string) (int, error) {
	n := 0
	err := r.scanEntries(ctx, r.pattern(tenant, model), func(keys []string, vals []any) error {
		var del []string
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			var e Entry
			if e.UnmarshalBinary([]byte(s)) != nil || purgeMatch(&e, tenant, model) {
				del = append(del, keys[i])
			}
		}
		if len(del) > 0 {
			if err := r.c.Unlink(ctx, del...).Err(); err != nil {
				return err
			}
			n += len(del)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, r.c.XAdd(ctx, &redis.XAddArgs{Stream: r.events, MaxLen: r.o.EventsMax, Approx: true,
		Values: []any{"op", "purge", "tenant", tenant, "model", model}}).Err()
}

// scanEntries runs fn on the keys matching pattern and their values, in batches.
func (r *Redis) scanEntries(ctx context.Context, pattern string, fn func(keys []string, vals []any) error) error {
	var cursor uint64
	for {
		keys, next, err := r.c.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			vals, err := r.c.MGet(ctx, keys...).Result()
			if err != nil {
				return err
			}
			if err := fn(keys, vals); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Scan implements Store.
func (r *Redis) Scan(ctx context.Context, fn func(*Entry) bool) error {
	now := r.o.Now()
	errStop := errors.New("stop")
	err := r.scanEntries(ctx, r.o.Prefix+"e:*", func(_ []string, vals []any) error {
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			e := &Entry{}
			if e.UnmarshalBinary([]byte(s)) != nil || (!e.Expires.IsZero() && !now.Before(e.Expires)) {
				continue
			}
			if !fn(e) {
				return errStop
			}
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// Len implements Store: the keys in the database (give the cache a database of its
// own for an exact figure).
func (r *Redis) Len() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := r.c.DBSize(ctx).Result()
	if err != nil {
		return 0
	}
	return int(n)
}

// Watch implements Watcher: it follows the events stream from its current end.
func (r *Redis) Watch(ctx context.Context, fn func(Event)) error {
	last := "$"
	for {
		res, err := r.c.XRead(ctx, &redis.XReadArgs{Streams: []string{r.events, last}, Count: 512, Block: 5 * time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, st := range res {
			for _, m := range st.Messages {
				last = m.ID
				ev, ok := parseEvent(m.Values)
				if ok {
					fn(ev)
				}
			}
		}
	}
}

func parseEvent(v map[string]any) (Event, bool) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	var ev Event
	switch str("op") {
	case "put", "del":
		ev.Op = OpPut
		if str("op") == "del" {
			ev.Op = OpDelete
		}
		b, err := hex.DecodeString(str("key"))
		if err != nil || len(b) != len(ev.Key) {
			return ev, false
		}
		copy(ev.Key[:], b)
	case "purge":
		ev.Op, ev.Tenant, ev.Model = OpPurge, str("tenant"), str("model")
	default:
		return ev, false
	}
	return ev, true
}

// Close implements Store.
func (r *Redis) Close() error { return r.c.Close() }
