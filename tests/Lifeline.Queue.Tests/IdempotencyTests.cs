using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

public sealed class IdempotencyTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_same_idempotency_key_returns_the_existing_task()
    {
        var client = env.Queue.Client();
        var type = NewType("idem.single");
        var first = await client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, idempotencyKey: "order-42") });
        var second = await client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, """{"other":true}""", idempotencyKey: "order-42") });

        Assert.True(first.Created);
        Assert.False(second.Created);
        Assert.Equal(first.Task.Id, second.Task.Id);
        Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE idempotency_key = 'order-42'"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_enqueues_of_one_key_on_two_instances_create_one_task()
    {
        var second = await env.StartInstanceAsync();
        for (var round = 0; round < 5; round++)
        {
            var key = $"race-{round}-{Guid.NewGuid():N}";
            var type = NewType("idem.race");
            var calls = Enumerable.Range(0, 32).Select(i =>
                (i % 2 == 0 ? env.Queue : second).Client().EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type, idempotencyKey: key) }).ResponseAsync);
            var responses = await Task.WhenAll(calls);

            Assert.Single(responses.Select(r => r.Task.Id).Distinct());
            Assert.Equal(1, responses.Count(r => r.Created));
            Assert.Equal(1, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE idempotency_key = @k", ("k", key)));
            Assert.Equal(1, await env.ScalarAsync<long>(
                "SELECT count(*) FROM task_history h JOIN tasks t ON t.id = h.task_id WHERE t.idempotency_key = @k", ("k", key)));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_batches_sharing_keys_create_each_key_once()
    {
        var type = NewType("idem.batch");
        var keys = Enumerable.Range(0, 50).Select(i => $"batch-{i}-{Guid.NewGuid():N}").ToArray();
        var calls = Enumerable.Range(0, 6).Select(_ =>
        {
            var request = new EnqueueTasksRequest();
            request.Tasks.AddRange(keys.Select(k => new BatchTask { Task = Spec(type, idempotencyKey: k) }));
            return env.Queue.Client().EnqueueTasksAsync(request).ResponseAsync;
        });
        var responses = await Task.WhenAll(calls);

        Assert.Equal(keys.Length, responses.Sum(r => r.CreatedCount));
        Assert.Equal(keys.Length, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @t", ("t", type)));
        foreach (var response in responses)
        {
            Assert.Equal(responses[0].Tasks.Select(t => t.Id), response.Tasks.Select(t => t.Id));
        }
    }
}
