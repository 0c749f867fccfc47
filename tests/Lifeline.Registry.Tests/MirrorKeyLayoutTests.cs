using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The Redis mirror's layout as the registry really writes it: every key of a tenant carries the tenant's hash tag, so
/// what one script or transaction touches lies in one Redis Cluster slot; lapses are found in every tenant's deadlines.
/// Its own environment: it reads every key of its Redis.
/// </summary>
public sealed class MirrorKeyLayoutTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Each_tenants_keys_share_one_cluster_slot_and_lapses_are_found_in_every_tenant()
    {
        string[] tenants = ["default", "acme"];
        var beating = new List<IAsyncDisposable>();
        var silent = new List<(string Tenant, Worker Worker)>();
        foreach (var tenant in tenants)
        {
            var client = env.Registry.Registry(tenant);
            var live = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
            beating.Add(client.KeepBeating(live));
            var quiet = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
            await client.BeatAsync(quiet);
            // A command it never fetches: its list stays.
            await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = quiet.Id }, deadline: Deadline());
            silent.Add((tenant, quiet));
        }

        // The silent workers lapse (TTL 3 s): each tenant's is announced lost once, whichever tenant's deadlines it is in.
        foreach (var (tenant, worker) in silent)
        {
            Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(worker.Id), "lost") == 1, TimeSpan.FromSeconds(15)),
                $"the lapse of {tenant}/{worker.Id} was not announced");
        }

        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString + ",allowAdmin=true");
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var keys = new List<string>();
        await foreach (var key in server.KeysAsync(pattern: "*"))
        {
            keys.Add(key!);
        }
        Assert.Contains((string)WorkerMirror.Tenants!, keys);
        foreach (var key in keys.Where(k => k != (string)WorkerMirror.Tenants!))
        {
            Assert.True(tenants.Any(t => key.StartsWith(WorkerMirror.TenantSlot(t) + ":", StringComparison.Ordinal)), $"{key} carries no tenant hash tag");
        }
        Assert.Equal(12182, Slot("foo")); // CLUSTER KEYSLOT foo: the slot function is Redis Cluster's
        foreach (var tenant in tenants)
        {
            var slot = Slot(WorkerMirror.DeadlinesKey(tenant)!);
            var own = keys.Where(k => k.StartsWith(WorkerMirror.TenantSlot(tenant), StringComparison.Ordinal)).ToList();
            Assert.Contains(own, k => k.Contains(":worker:", StringComparison.Ordinal));
            Assert.Contains(own, k => k.Contains(":worker-alive:", StringComparison.Ordinal));
            Assert.Contains(own, k => k.Contains(":worker-commands:", StringComparison.Ordinal));
            Assert.All(own, k => Assert.Equal(slot, Slot(k)));
        }
        Assert.NotEqual(Slot(WorkerMirror.DeadlinesKey("default")!), Slot(WorkerMirror.DeadlinesKey("acme")!));
        Assert.Equal(tenants.Order(), (await redis.GetDatabase().SetMembersAsync(WorkerMirror.Tenants)).Select(v => (string)v!).Order());

        foreach (var beat in beating)
        {
            await beat.DisposeAsync();
        }
    }

    /// <summary>Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag (or of the whole key) mod 16384.</summary>
    private static int Slot(string key)
    {
        var open = key.IndexOf('{', StringComparison.Ordinal);
        if (open >= 0)
        {
            var close = key.IndexOf('}', open + 1);
            if (close > open + 1)
            {
                key = key[(open + 1)..close];
            }
        }
        ushort crc = 0;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(key))
        {
            crc ^= (ushort)(b << 8);
            for (var i = 0; i < 8; i++)
            {
                crc = (crc & 0x8000) != 0 ? (ushort)((crc << 1) ^ 0x1021) : (ushort)(crc << 1);
            }
        }
        return crc % 16384;
    }
}
