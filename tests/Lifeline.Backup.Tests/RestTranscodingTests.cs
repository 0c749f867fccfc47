using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Lifeline.Backup.Tests;

/// <summary>The REST routes of services/Lifeline.Backup/README.md (google.api.http), served by the service's JSON transcoding.</summary>
public sealed class RestTranscodingTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Backups_and_schedules_are_reachable_over_REST_as_documented()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        using var http = host.Rest();

        using var created = await http.PostAsJsonAsync("/api/v1/backups", new { target = target.Name, type = "BACKUP_TYPE_FULL" });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var body = await created.Content.ReadAsStringAsync();
        Assert.Contains("\"phase\"", body);
        var backupId = (await new BackupCalls.Lister(host).AllAsync(target.Name)).Single();

        using var list = await http.GetAsync($"/api/v1/backups?target={target.Name}&type=BACKUP_TYPE_FULL&pageSize=10");
        using (var doc = JsonDocument.Parse(await list.Content.ReadAsStringAsync()))
        {
            Assert.Equal(backupId, doc.RootElement.GetProperty("backups")[0].GetProperty("backupId").GetString());
        }
        using var get = await http.GetAsync($"/api/v1/backups/{backupId}");
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);

        using var schedule = await http.PutAsJsonAsync($"/api/v1/backup-schedules/{target.Name}/BACKUP_TYPE_FULL", new { cron = "0 3 * * *" });
        Assert.Equal(HttpStatusCode.OK, schedule.StatusCode);
        using var schedules = await http.GetAsync("/api/v1/backup-schedules");
        Assert.Contains("0 3 * * *", await schedules.Content.ReadAsStringAsync());

        using var badCron = await http.PutAsJsonAsync($"/api/v1/backup-schedules/{target.Name}/BACKUP_TYPE_FULL", new { cron = "61 * * * *" });
        Assert.Equal(HttpStatusCode.BadRequest, badCron.StatusCode);

        using var deleted = await http.DeleteAsync($"/api/v1/backups/{backupId}?cascade=true");
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        using var gone = await http.GetAsync($"/api/v1/backups/{backupId}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }
}
