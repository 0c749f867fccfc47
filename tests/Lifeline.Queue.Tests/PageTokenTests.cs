using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>Every listing of the queue pages with tokens it issued and refuses any other token on <c>page_token</c>.</summary>
public sealed class PageTokenTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private QueueService.QueueServiceClient Client => env.Queue.Client();

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    [Fact(Timeout = 120_000)]
    public async Task Listings_page_with_the_tokens_they_issued_and_refuse_every_other_token()
    {
        var type = NewType("tokens");
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            ids.Add((await Client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, maxRetries: 0) }, deadline: Deadline)).Task.Id);
        }
        for (var i = 0; i < 3; i++)
        {
            var leased = Assert.Single((await Client.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = "w", TaskTypes = { type } }, deadline: Deadline)).Tasks);
            await Client.FailTaskAsync(new FailTaskRequest
            {
                TaskId = leased.Id, FencingToken = leased.FencingToken, Error = new Common.V1.ErrorDetail { Code = "X", Retryable = true },
            }, deadline: Deadline);
        }

        // Issued tokens page through everything once.
        var listed = new List<string>();
        var tasksToken = "";
        do
        {
            var page = await Client.ListTasksAsync(new ListTasksRequest { Type = type, PageSize = 1, PageToken = tasksToken }, deadline: Deadline);
            listed.AddRange(page.Tasks.Select(t => t.Id));
            tasksToken = page.NextPageToken;
        }
        while (tasksToken.Length > 0);
        Assert.Equal(ids.Order(), listed.Order());
        var firstTasks = (await Client.ListTasksAsync(new ListTasksRequest { Type = type, PageSize = 1 }, deadline: Deadline)).NextPageToken;
        var firstLetters = (await Client.ListDeadLettersAsync(new ListDeadLettersRequest { Type = type, PageSize = 1 }, deadline: Deadline)).NextPageToken;
        var firstHistory = (await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = ids[0], PageSize = 1 }, deadline: Deadline)).NextPageToken;
        Assert.NotEmpty(firstLetters);
        Assert.NotEmpty(firstHistory);
        await Client.ListDeadLettersAsync(new ListDeadLettersRequest { Type = type, PageSize = 1, PageToken = firstLetters }, deadline: Deadline);
        await Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = ids[0], PageSize = 1, PageToken = firstHistory }, deadline: Deadline);

        string[] neverIssued = ["AAAA", "////", "0", "12", "-1", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", firstTasks[..^1], firstTasks + "AA", new string('A', 100_000)];
        foreach (var token in neverIssued.Concat([firstLetters, firstHistory]))
        {
            await RefusedOnPageTokenAsync(() => Client.ListTasksAsync(new ListTasksRequest { PageToken = token }, deadline: Deadline).ResponseAsync);
        }
        foreach (var token in neverIssued.Concat([firstTasks, firstHistory]))
        {
            await RefusedOnPageTokenAsync(() => Client.ListDeadLettersAsync(new ListDeadLettersRequest { PageToken = token }, deadline: Deadline).ResponseAsync);
        }
        foreach (var token in neverIssued.Concat([firstTasks, firstLetters]))
        {
            await RefusedOnPageTokenAsync(() =>
                Client.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = ids[0], PageToken = token }, deadline: Deadline).ResponseAsync);
        }
    }

    private static async Task RefusedOnPageTokenAsync<T>(Func<Task<T>> call)
    {
        var status = await RefusedAsync(call, StatusCode.InvalidArgument);
        Assert.Equal("page_token", Assert.Single(status.GetDetail<BadRequest>().FieldViolations).Field);
    }
}
