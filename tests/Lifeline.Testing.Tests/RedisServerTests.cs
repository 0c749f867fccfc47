using System.Net.Sockets;
using StackExchange.Redis;

namespace Lifeline.Testing.Tests;

public sealed class RedisServerTests
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Redis_answers_ping_and_restart_keeps_the_port_but_loses_the_data()
    {
        var redis = await RedisServer.StartAsync();
        var port = redis.Port;
        await using (redis)
        {
            await using (var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString))
            {
                Assert.True(await connection.GetDatabase().PingAsync() >= TimeSpan.Zero);
                await connection.GetDatabase().StringSetAsync("key", "value");
            }

            await redis.StopAsync();
            Assert.False(redis.IsRunning);
            Assert.False(await AcceptsConnectionsAsync(port));

            await redis.RestartAsync();

            Assert.Equal(port, redis.Port);
            Assert.True(redis.IsRunning);
            await using var reconnected = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
            Assert.False((await reconnected.GetDatabase().StringGetAsync("key")).HasValue);
        }

        Assert.False(await AcceptsConnectionsAsync(port));
    }

    private static async Task<bool> AcceptsConnectionsAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
