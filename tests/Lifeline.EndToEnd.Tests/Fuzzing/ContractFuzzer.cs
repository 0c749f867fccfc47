using Lifeline.ServiceDefaults.Security;
using System.Globalization;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Security;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// Every case of every RPC and REST route of the compiled contracts (the gateway's <see cref="ContractCatalog"/>), and
/// a reproducible selection of them: with the seed, the same cases in the same order, and a budget spread so that every
/// RPC gets each of its attack families before any RPC gets a second case of one family.
/// </summary>
internal sealed class ContractFuzzer
{
    /// <summary>Cases run when LIFELINE_FUZZ_CASES is not set: 40–90 s on a shared two-core machine (all of them, about 6,900, take 1.5–3 min).</summary>
    public const int DefaultCases = 3000;

    public const int DefaultSeed = 20261201;

    private ContractFuzzer(ContractCatalog catalog, IReadOnlyList<FuzzCase> cases)
    {
        Catalog = catalog;
        AllCases = cases;
    }

    public ContractCatalog Catalog { get; }

    /// <summary>The whole space, ids in generation order (RPCs by name; gRPC field cases, whole-message, framing, then REST per route).</summary>
    public IReadOnlyList<FuzzCase> AllCases { get; }

    public int RestRoutes => Catalog.Methods.Values.Sum(m => m.HttpRoutes.Count);

    /// <summary>How many cases the first round of <see cref="Select"/> has: one per RPC, transport, family (and route).</summary>
    public int FirstRound => AllCases.Select(c => (c.Rpc.FullName, c.Transport, c.Family, c.Route)).Distinct().Count();

    public static ContractFuzzer FromContracts()
    {
        var catalog = ContractCatalog.Load();
        var cases = new List<FuzzCase>();
        foreach (var rpc in catalog.Methods.Values.OrderBy(m => m.FullName, StringComparer.Ordinal))
        {
            cases.AddRange(ProtobufCases.For(rpc));
            foreach (var route in rpc.HttpRoutes)
            {
                cases.AddRange(RestCases.For(rpc, route));
            }
        }

        return new ContractFuzzer(catalog, [.. cases.Select((c, i) => c with { Id = i + 1 })]);
    }

    /// <summary>
    /// Up to <paramref name="budget"/> cases. First, per RPC, one case of each (transport, family) on a field picked at
    /// random, taken round-robin across RPCs; then the remaining cases in random order.
    /// </summary>
    public IReadOnlyList<FuzzCase> Select(int budget, int seed)
    {
        var random = new Random(seed);
        var firstRound = new List<Queue<FuzzCase>>();
        var rest = new List<FuzzCase>();
        foreach (var rpcCases in AllCases.GroupBy(c => c.Rpc.FullName))
        {
            var representatives = new List<FuzzCase>();
            foreach (var family in rpcCases.GroupBy(c => (c.Transport, c.Family, c.Route)))
            {
                var members = family.ToList();
                var pick = members[random.Next(members.Count)];
                representatives.Add(pick);
                rest.AddRange(members.Where(m => m.Id != pick.Id));
            }

            firstRound.Add(new Queue<FuzzCase>(Shuffle(representatives, random)));
        }

        var selected = new List<FuzzCase>(Math.Min(budget, AllCases.Count));
        while (selected.Count < budget && firstRound.Any(q => q.Count > 0))
        {
            foreach (var queue in firstRound)
            {
                if (selected.Count < budget && queue.TryDequeue(out var next))
                {
                    selected.Add(next);
                }
            }
        }

        selected.AddRange(Shuffle(rest, random).Take(budget - selected.Count));
        return selected;
    }

    /// <summary>
    /// True for the RPCs a worker calls (by <see cref="RpcPermissions"/>): sent with a worker's key; every other RPC with a
    /// platform admin's, so that calls reach the services (service-only RPCs are refused to both, by the gateway).
    /// </summary>
    public static bool IsWorkerRpc(RpcMethod rpc) => RpcPermissions.Required(rpc.FullName) == Role.Worker;

    /// <summary>The marker a case's baseline carries: letters and digits only, valid wherever a name is.</summary>
    public static string Marker(string run, int caseId) => string.Create(CultureInfo.InvariantCulture, $"fz{run}c{caseId}z");

    public static int IntFromEnvironment(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value > 0 ? value : fallback;

    private static List<T> Shuffle<T>(IEnumerable<T> items, Random random)
    {
        var list = items.ToList();
        for (var i = list.Count - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }

        return list;
    }
}
