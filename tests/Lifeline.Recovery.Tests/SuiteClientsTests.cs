using Lifeline.Recovery.Clients;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Which addresses recovery needs: it does not start without the queue's or the registry's, and works without the
/// checkpoint and backup services, saying so when asked for them. Built, not started: nothing connects.
/// </summary>
public sealed class SuiteClientsTests
{
    private static Dictionary<string, string?> Settings() => new(TestIdentity.Settings)
    {
        ["ConnectionStrings:recoverydb"] = "Host=127.0.0.1;Port=1;Database=unused",
        ["ConnectionStrings:redis"] = "127.0.0.1:1",
        ["services:queue:grpc:0"] = "http://127.0.0.1:1",
        ["services:registry:grpc:0"] = "http://127.0.0.1:1",
    };

    [Theory]
    [InlineData("queue")]
    [InlineData("registry")]
    public void Recovery_does_not_start_without_the_address_of_a_service_it_cannot_work_without(string service)
    {
        var settings = Settings();
        settings[$"services:{service}:grpc:0"] = null;

        var refused = Assert.Throws<InvalidOperationException>(() => RecoveryApplication.Build([], b => b.Configuration.AddInMemoryCollection(settings)));

        Assert.StartsWith($"services:{service}:grpc:0 is not set: ", refused.Message, StringComparison.Ordinal);
        Assert.Contains($"calls the {service} service and cannot start without its address", refused.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recovery_is_built_without_the_checkpoint_and_backup_addresses_and_names_them_when_asked()
    {
        await using var app = RecoveryApplication.Build([], b => b.Configuration.AddInMemoryCollection(Settings()));
        var clients = app.Services.GetRequiredService<SuiteClients>();

        Assert.Equal([true, true, false, false], new[] { "queue", "registry", "checkpoint", "backup" }.Select(clients.Has));
        Assert.Equal("services:backup:grpc:0 is not configured: this service cannot reach the backup service.",
            Assert.Throws<InvalidOperationException>(() => clients.Backup).Message);
        Assert.Equal("services:checkpoint:grpc:0 is not configured: this service cannot reach the checkpoint service.",
            Assert.Throws<InvalidOperationException>(() => clients.Health("checkpoint")).Message);
    }
}
