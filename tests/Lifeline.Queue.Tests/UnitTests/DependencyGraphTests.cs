using System.Diagnostics;
using Lifeline.Queue.Dependencies;

namespace Lifeline.Queue.Tests.UnitTests;

/// <summary>DependencyGraph.FindCycle over batch positions (an edge points from a task to one it waits for).</summary>
public sealed class DependencyGraphTests
{
    [Fact]
    public void An_empty_graph_and_a_graph_without_edges_are_acyclic()
    {
        Assert.Null(DependencyGraph.FindCycle(0, []));
        Assert.Null(DependencyGraph.FindCycle(5, []));
    }

    [Fact]
    public void A_diamond_is_acyclic()
    {
        // 0 waits for 1 and 2, both wait for 3.
        Assert.Null(DependencyGraph.FindCycle(4, [(0, 1), (0, 2), (1, 3), (2, 3)]));
    }

    [Fact]
    public void Edges_in_any_order_to_an_already_finished_node_are_not_a_cycle()
    {
        // 3 is fully explored from root 0 before root 2 reaches it again (a cross edge, not a back edge).
        Assert.Null(DependencyGraph.FindCycle(4, [(2, 3), (0, 1), (1, 3), (2, 1)]));
    }

    [Fact]
    public void A_two_cycle_is_found()
    {
        var cycle = DependencyGraph.FindCycle(2, [(0, 1), (1, 0)]);
        Assert.Equal([0, 1, 0], cycle);
    }

    [Fact]
    public void A_self_loop_is_found()
    {
        var cycle = DependencyGraph.FindCycle(3, [(0, 1), (2, 2)]);
        Assert.Equal([2, 2], cycle);
    }

    [Fact]
    public void A_cycle_behind_an_acyclic_prefix_names_only_the_cycle()
    {
        // 0 → 1 → 2 → 3 → 1: the cycle is 1, 2, 3.
        var cycle = DependencyGraph.FindCycle(4, [(0, 1), (1, 2), (2, 3), (3, 1)]);
        Assert.Equal([1, 2, 3, 1], cycle);
        AssertIsCycle(cycle!, [(0, 1), (1, 2), (2, 3), (3, 1)]);
    }

    [Fact]
    public void A_cycle_of_1000_nodes_is_found_with_its_full_path()
    {
        const int n = 1000;
        var edges = Enumerable.Range(0, n).Select(i => (i, (i + 1) % n)).ToList();

        var cycle = DependencyGraph.FindCycle(n, edges);

        Assert.NotNull(cycle);
        Assert.Equal(Enumerable.Range(0, n).Append(0), cycle);
        AssertIsCycle(cycle!, edges);
    }

    [Fact]
    public void A_cycle_among_many_acyclic_nodes_is_found()
    {
        // A wide DAG of 5,000 nodes, plus one back edge deep inside it.
        const int n = 5000;
        var edges = new List<(int, int)>();
        for (var i = 1; i < n; i++)
        {
            edges.Add((i, (i - 1) / 2)); // each node waits for its "parent" in a binary heap layout
        }
        Assert.Null(DependencyGraph.FindCycle(n, edges));

        edges.Add((0, 4321)); // the root now waits for a leaf that (transitively) waits for the root
        var cycle = DependencyGraph.FindCycle(n, edges);
        Assert.NotNull(cycle);
        Assert.Contains(0, cycle);
        Assert.Contains(4321, cycle);
        AssertIsCycle(cycle!, edges);
    }

    [Fact]
    public void A_chain_of_10000_nodes_is_acyclic_and_checked_fast()
    {
        const int n = 10_000;
        var edges = Enumerable.Range(1, n - 1).Select(i => (i, i - 1)).ToList();
        DependencyGraph.FindCycle(n, edges); // warm up the JIT

        var stopwatch = Stopwatch.StartNew();
        var cycle = DependencyGraph.FindCycle(n, edges);
        stopwatch.Stop();

        Assert.Null(cycle);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromMilliseconds(200), $"took {stopwatch.Elapsed.TotalMilliseconds:0.0} ms");
    }

    [Fact]
    public void A_chain_of_10000_nodes_closed_into_a_ring_is_found_without_recursion()
    {
        const int n = 10_000;
        var edges = Enumerable.Range(0, n).Select(i => (i, (i + 1) % n)).ToList();
        var cycle = DependencyGraph.FindCycle(n, edges);
        Assert.NotNull(cycle);
        Assert.Equal(n + 1, cycle!.Count);
        AssertIsCycle(cycle, edges);
    }

    /// <summary>The path starts and ends at the same node, visits no node twice otherwise, and follows real edges.</summary>
    private static void AssertIsCycle(IReadOnlyList<int> cycle, IReadOnlyCollection<(int From, int To)> edges)
    {
        Assert.True(cycle.Count >= 2);
        Assert.Equal(cycle[0], cycle[^1]);
        Assert.Equal(cycle.Count - 1, cycle.Take(cycle.Count - 1).Distinct().Count());
        var edgeSet = edges.ToHashSet();
        for (var i = 0; i + 1 < cycle.Count; i++)
        {
            Assert.Contains((cycle[i], cycle[i + 1]), edgeSet);
        }
    }
}
