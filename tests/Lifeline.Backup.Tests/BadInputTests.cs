using Grpc.Core;
using Lifeline.Backup.V1;

namespace Lifeline.Backup.Tests;

/// <summary>Refusals carry the right status and details, and change nothing.</summary>
public sealed class BadInputTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    private async Task<long> CatalogRowsAsync() =>
        await env.ScalarAsync<long>("SELECT (SELECT count(*) FROM backups) + (SELECT count(*) FROM restore_runs) + (SELECT count(*) FROM schedules)");

    private static void AssertViolation(Google.Rpc.Status status, string field)
    {
        Assert.Contains(status.BadRequest().FieldViolations, v => v.Field == field);
        Assert.Equal("INVALID_ARGUMENT", status.ErrorInfo().Reason);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_bad_request_is_refused_with_its_status_and_reason_and_writes_nothing()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var before = await CatalogRowsAsync();
        var unknownId = Guid.NewGuid().ToString();

        // Unknown target / backup: NOT_FOUND.
        var s = await BackupCalls.RefusedAsync(() => client.CreateAsync("nosuchtarget", BackupType.Full), StatusCode.NotFound);
        Assert.Equal("TARGET_NOT_FOUND", s.ErrorInfo().Reason);
        s = await BackupCalls.RefusedAsync(() => client.RestoreAsync("nosuchtarget", unknownId), StatusCode.NotFound);
        Assert.Equal("TARGET_NOT_FOUND", s.ErrorInfo().Reason);
        s = await BackupCalls.RefusedAsync(() => client.SetScheduleAsync(new SetScheduleRequest { Target = "nosuchtarget", Type = BackupType.Full, Cron = "0 3 * * *" }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("TARGET_NOT_FOUND", s.ErrorInfo().Reason);
        s = await BackupCalls.RefusedAsync(() => client.ApplyRetentionAsync(new ApplyRetentionRequest { Target = "nosuchtarget", Rules = { new RetentionRule { Type = BackupType.Full, KeepCount = 1 } } }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("TARGET_NOT_FOUND", s.ErrorInfo().Reason);
        foreach (var call in new Func<Task>[]
        {
            () => client.GetBackupAsync(new GetBackupRequest { BackupId = unknownId }).ResponseAsync,
            () => client.VerifyAsync(unknownId),
            () => client.RestoreAsync(target.Name, unknownId),
            () => client.DeleteBackupAsync(new DeleteBackupRequest { BackupId = unknownId }).ResponseAsync,
        })
        {
            s = await BackupCalls.RefusedAsync(call, StatusCode.NotFound);
            Assert.Equal("BACKUP_NOT_FOUND", s.ErrorInfo().Reason);
            Assert.Equal(unknownId, s.ErrorInfo().Metadata["resource_id"]);
        }

        // Nothing to build on: FAILED_PRECONDITION.
        s = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Incremental), StatusCode.FailedPrecondition);
        Assert.Equal("NO_FULL_BACKUP", s.ErrorInfo().Reason);
        s = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Differential), StatusCode.FailedPrecondition);
        Assert.Equal("NO_FULL_BACKUP", s.ErrorInfo().Reason);

        // Invalid fields: INVALID_ARGUMENT naming the field.
        AssertViolation(await BackupCalls.RefusedAsync(() => client.CreateAsync("", BackupType.Full), StatusCode.InvalidArgument), "target");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.CreateAsync("bad target!", BackupType.Full), StatusCode.InvalidArgument), "target");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Unspecified), StatusCode.InvalidArgument), "type");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, (BackupType)42), StatusCode.InvalidArgument), "type");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.GetBackupAsync(new GetBackupRequest { BackupId = "not-a-uuid" }).ResponseAsync, StatusCode.InvalidArgument), "backup_id");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.VerifyAsync(""), StatusCode.InvalidArgument), "backup_id");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.RestoreAsync(target.Name, "x"), StatusCode.InvalidArgument), "backup_id");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.ListBackupsAsync(new ListBackupsRequest { PageSize = 501 }).ResponseAsync, StatusCode.InvalidArgument), "page_size");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.ListBackupsAsync(new ListBackupsRequest { PageToken = "garbage" }).ResponseAsync, StatusCode.InvalidArgument), "page_token");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.ApplyRetentionAsync(new ApplyRetentionRequest()).ResponseAsync, StatusCode.InvalidArgument), "rules");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.ApplyRetentionAsync(new ApplyRetentionRequest
        {
            Rules = { new RetentionRule { Type = BackupType.Full } },
        }).ResponseAsync, StatusCode.InvalidArgument), "rules[0]");
        AssertViolation(await BackupCalls.RefusedAsync(() => client.ApplyRetentionAsync(new ApplyRetentionRequest
        {
            Rules = { new RetentionRule { Type = BackupType.Full, KeepCount = -1 }, new RetentionRule { Type = BackupType.Full, KeepCount = 1 } },
        }).ResponseAsync, StatusCode.InvalidArgument), "rules[1].type");

        // Malformed schedules.
        foreach (var cron in new[] { "", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a b c d e", "0 0 30 2 *" })
        {
            var refused = await BackupCalls.RefusedAsync(() => client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = cron }).ResponseAsync, StatusCode.InvalidArgument);
            AssertViolation(refused, "cron");
        }
        AssertViolation(await BackupCalls.RefusedAsync(() => client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Cron = "0 3 * * *" }).ResponseAsync, StatusCode.InvalidArgument), "type");

        Assert.Equal(before, await CatalogRowsAsync());
        var files = Path.Combine(env.BackupDirectory, target.Name);
        Assert.Empty(Directory.Exists(files) ? Directory.GetFiles(files) : []);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Restoring_a_backup_onto_another_target_or_a_failed_backup_is_refused()
    {
        var a = await env.CreateTargetAsync(rows: 10);
        var b = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([a, b]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(a.Name, BackupType.Full);
        var content = await b.ContentAsync();

        var s = await BackupCalls.RefusedAsync(() => client.RestoreAsync(b.Name, full.BackupId), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_TARGET_MISMATCH", s.ErrorInfo().Reason);
        Assert.Equal(content, await b.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Schedules_are_set_listed_and_deleted()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();

        var set = await client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = "0 3 * * *" });
        Assert.Equal(3, set.Schedule.NextRunAt.ToDateTime().Hour);
        await client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Incremental, Cron = "*/15 * * * *" });
        var replaced = await client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = "30 1 * * mon-fri" });
        Assert.Equal(30, replaced.Schedule.NextRunAt.ToDateTime().Minute);

        var list = await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name });
        Assert.Equal(2, list.Schedules.Count);
        Assert.Equal("30 1 * * mon-fri", list.Schedules.Single(x => x.Type == BackupType.Full).Cron);

        Assert.True((await client.DeleteScheduleAsync(new DeleteScheduleRequest { Target = target.Name, Type = BackupType.Full })).Deleted);
        Assert.False((await client.DeleteScheduleAsync(new DeleteScheduleRequest { Target = target.Name, Type = BackupType.Full })).Deleted);
        Assert.Single((await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name })).Schedules);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task List_filters_by_target_type_status_and_time_and_pages()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var start = DateTime.UtcNow;
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await client.CreateAsync(target.Name, BackupType.Full)).Backup.BackupId);
        }
        ids.Add((await client.CreateAsync(target.Name, BackupType.Incremental)).Backup.BackupId);

        var seen = new List<string>();
        var request = new ListBackupsRequest { Target = target.Name, PageSize = 3 };
        do
        {
            var page = await client.ListBackupsAsync(request);
            seen.AddRange(page.Backups.Select(b => b.BackupId));
            request.PageToken = page.NextPageToken;
        }
        while (request.PageToken.Length > 0);
        Assert.Equal(ids.AsEnumerable().Reverse(), seen);

        var incrementals = await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name, Type = BackupType.Incremental });
        Assert.Equal([ids[3]], incrementals.Backups.Select(b => b.BackupId));
        var completed = await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name, Status = BackupStatus.Completed });
        Assert.Equal(4, completed.Backups.Count);
        var none = await client.ListBackupsAsync(new ListBackupsRequest
        {
            Target = target.Name,
            StartedBefore = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(start.AddMinutes(-1)),
        });
        Assert.Empty(none.Backups);
    }
}
