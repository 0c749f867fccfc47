using System.Collections.Concurrent;
using Grpc.Core;
using Lifeline.Registry.V1;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The root cause of calls that never got an answer (a test run hung for 20 minutes on DeregisterWorker, the
/// fuzz test saw 20 s stalls): a statement's pooled connection was handed to a second caller while the first
/// still used it ("A command is already in progress"), leaving both waiting on one protocol stream. Thousands
/// of racing life-cycle calls — unknown ids (a statement, then a lookup) and known ones — must each get their
/// own answer.
/// </summary>
public sealed class ConnectionSharingTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Thousands_of_racing_life_cycle_calls_each_get_their_own_answer()
    {
        var client = env.Registry.Registry($"share-{Guid.NewGuid():N}"[..20]);
        var known = new List<Worker>();
        for (var i = 0; i < 8; i++)
        {
            known.Add(await client.RegisterAsync(Registration()));
        }
        var wrong = new ConcurrentBag<string>();

        await Parallel.ForEachAsync(Enumerable.Range(0, 3000), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            var unknown = Guid.NewGuid().ToString();
            try
            {
                switch (i % 5)
                {
                    case 0:
                        await client.DrainWorkerAsync(new DrainWorkerRequest { WorkerId = unknown }, deadline: deadline);
                        wrong.Add($"{i}: drained an unknown worker");
                        break;
                    case 1:
                        await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = unknown }, deadline: deadline);
                        wrong.Add($"{i}: deregistered an unknown worker");
                        break;
                    case 2:
                        // Registering again under a known name with another type: a statement, then a lookup.
                        var again = Registration(known[i % known.Count].Name, WorkerType.Orchestrator);
                        await client.RegisterWorkerAsync(again, deadline: deadline);
                        wrong.Add($"{i}: re-registered with another type");
                        break;
                    case 3:
                        var got = await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = known[i % known.Count].Id }, deadline: deadline);
                        if (got.Worker.Id != known[i % known.Count].Id)
                        {
                            wrong.Add($"{i}: GetWorker answered another worker");
                        }
                        break;
                    default:
                        await client.RegisterAsync(Registration());
                        break;
                }
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition)
            {
            }
            catch (RpcException ex)
            {
                wrong.Add($"{i}: {ex.StatusCode} {ex.Status.Detail}");
            }
        });

        Assert.True(wrong.IsEmpty, $"{wrong.Count} calls went wrong, e.g.:\n" + string.Join("\n", wrong.Take(10)));
    }
}
