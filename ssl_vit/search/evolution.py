"""Evolutionary search over a superformer's sub-networks under a FLOPs budget, resumable from a JSON state.

Per generation ``g`` (all randomness from ``random.Random((search, seed, g))``, so a resumed search
draws exactly what an uninterrupted one would):

* ``g = 0``: ``population`` random sub-networks inside the budget (rejection sampling, as the authors'
  ``init_population``);
* ``g > 0``: ``offspring`` children -- with probability ``crossover_prob`` a uniform crossover of two
  binary-tournament parents, then mutation; else a mutation of one parent -- each re-drawn until it is new
  and inside ``[min_gflops, max_gflops]``; parents + children are cut back to ``population`` by NSGA-II
  (objectives: top-1 up, GFLOPs down) or, with ``objective=constrained``, by top-1 alone.

Candidates are keyed by their canonical encoding (identities shifted to the end when the superformer
shifts them), so two encodings of one weight path are evaluated once. FLOPs and top-1 are cached in the
state. The state file is rewritten atomically after every generation (and every few evaluations).

Example::

    search = EvolutionarySearch(space, cfg.search, seed=0, flops_fn=..., score_fn=..., canon=...)
    state = search.run(Path("out/search_state.json"))          # resumes if the file exists
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tqdm.auto import tqdm

from ssl_vit.core.atomic import atomic_write_text
from ssl_vit.core.seeding import derive_seed
from ssl_vit.errors import SslvitError
from ssl_vit.models.vitas_space import SearchSpace, SubNet
from ssl_vit.search.nsga2 import nsga2_select, rank_and_crowding

STATE_VERSION = 1


class EvolutionarySearch:
    def __init__(
        self,
        space: SearchSpace,
        search_cfg,
        seed: int,
        flops_fn: Callable[[SubNet], float],
        score_fn: Callable[[SubNet], float],
        canon: Callable[[SubNet], SubNet] = lambda n: n,
        fingerprint: Optional[Dict] = None,
        progress: bool = True,
        save_every: int = 4,
    ):
        self.space, self.cfg, self.seed = space, search_cfg, seed
        self.flops_fn, self.score_fn, self.canon = flops_fn, score_fn, canon
        self.fingerprint = fingerprint or {}
        self.progress, self.save_every = progress, save_every
        self.state: Dict = {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "generation": -1,
            "population": [],
            "evaluated": {},
            "flops": {},
            "history": [],
        }

    # ---- state file ------------------------------------------------------------------------------------
    def load(self, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            st = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SslvitError(f"search state '{path}' is unreadable ({e}); delete it to start over") from None
        if st.get("version") != STATE_VERSION:
            raise SslvitError(
                f"search state '{path}' has version {st.get('version')}, expected {STATE_VERSION}; "
                f"delete it to start over"
            )
        if st.get("fingerprint") != self.fingerprint:
            diff = [
                k
                for k in set(st.get("fingerprint", {})) | set(self.fingerprint)
                if st.get("fingerprint", {}).get(k) != self.fingerprint.get(k)
            ]
            raise SslvitError(
                f"search state '{path}' belongs to a different search (changed: {', '.join(sorted(diff))}); "
                f"use another --output-dir or delete the state file"
            )
        self.state = st
        return True

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.state, indent=1) + "\n")

    # ---- candidates ------------------------------------------------------------------------------------
    def gflops(self, net: SubNet) -> float:
        key = net.key()
        if key not in self.state["flops"]:
            self.state["flops"][key] = self.flops_fn(net)
        return self.state["flops"][key]

    def feasible(self, net: SubNet) -> bool:
        return self.cfg.min_gflops <= self.gflops(net) <= self.cfg.max_gflops

    def _draw(self, make: Callable[[], SubNet], taken: set, what: str) -> SubNet:
        smallest = self.gflops(self.canon(self.space.smallest()))
        for _ in range(300 if smallest <= self.cfg.max_gflops else 0):
            net = self.canon(make())
            if net.key() not in taken and self.feasible(net):
                return net
        raise SslvitError(
            f"could not draw a new {what} within search.max_gflops={self.cfg.max_gflops} "
            f"(smallest sub-network: {smallest:.6f} GFLOPs); "
            f"raise search.max_gflops or lower search.min_gflops / search.population"
        )

    def _objectives(self, keys: List[str]):
        ev = self.state["evaluated"]
        return [(-ev[k]["top1"], ev[k]["gflops"]) for k in keys]

    def _evaluate(self, nets: List[SubNet], gen: int, path: Optional[Path]) -> None:
        ev = self.state["evaluated"]
        todo = [n for n in nets if n.key() not in ev]
        bar = tqdm(
            todo,
            desc=f"search gen {gen}/{self.cfg.generations - 1}",
            unit="net",
            leave=True,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        for i, net in enumerate(bar):
            ev[net.key()] = {
                "subnet": net.to_dict(),
                "top1": float(self.score_fn(net)),
                "gflops": self.gflops(net),
                "generation": gen,
            }
            best = max(v["top1"] for v in ev.values())
            bar.set_postfix(best=f"{best:.2f}", gflops=f"{ev[net.key()]['gflops']:.4f}")
            if path is not None and (i + 1) % self.save_every == 0:
                self.save(path)  # a kill mid-generation loses at most save_every evaluations

    def _offspring(self, rng: random.Random, parents: List[str]) -> List[SubNet]:
        pop = [SubNet.from_dict(self.state["evaluated"][k]["subnet"]) for k in parents]
        if self.cfg.objective == "nsga2":
            fitness = rank_and_crowding(self._objectives(parents))
        else:
            fitness = [(-self.state["evaluated"][k]["top1"], 0.0) for k in parents]

        def tournament() -> SubNet:
            i, j = rng.randrange(len(pop)), rng.randrange(len(pop))
            return pop[i] if fitness[i] <= fitness[j] else pop[j]

        taken, kids = set(self.state["evaluated"]) | set(parents), []
        for _ in range(self.cfg.offspring):
            if rng.random() < self.cfg.crossover_prob:
                make = lambda: self.space.mutate(
                    self.space.crossover(tournament(), tournament(), rng),
                    rng,  # noqa: E731
                    self.cfg.mutation_prob,
                )
            else:
                make = lambda: self.space.mutate(tournament(), rng, max(self.cfg.mutation_prob, 1e-9))  # noqa: E731
            kid = self._draw(make, taken, "child")
            taken.add(kid.key())
            kids.append(kid)
        return kids

    # ---- the loop ----------------------------------------------------------------------------------------
    def run(self, path: Optional[Path] = None, log: Callable[[str], None] = lambda m: None) -> Dict:
        if path is not None and self.load(path):
            log(f"resuming the search after generation {self.state['generation']} ({path})")
        for gen in range(self.state["generation"] + 1, self.cfg.generations):
            rng = random.Random(derive_seed("search", self.seed, gen))
            if gen == 0:
                taken: set = set()
                nets = []
                for _ in range(self.cfg.population):
                    net = self._draw(lambda rng=rng: self.space.sample(rng), taken, "initial sub-network")
                    taken.add(net.key())
                    nets.append(net)
                self._evaluate(nets, gen, path)
                survivors, children = [n.key() for n in nets], [n.key() for n in nets]
            else:
                parents = self.state["population"]
                kids = self._offspring(rng, parents)
                self._evaluate(kids, gen, path)
                children = [k.key() for k in kids]
                pool = parents + children
                if self.cfg.objective == "nsga2":
                    keep = nsga2_select(self._objectives(pool), self.cfg.population)
                else:
                    keep = sorted(range(len(pool)), key=lambda i: -self.state["evaluated"][pool[i]]["top1"])
                    keep = keep[: self.cfg.population]
                survivors = [pool[i] for i in keep]
            self.state["population"] = survivors
            self.state["generation"] = gen
            best = max(survivors, key=lambda k: self.state["evaluated"][k]["top1"])
            self.state["history"].append(
                {
                    "generation": gen,
                    "children": children,
                    "population": survivors,
                    "best": best,
                    "best_top1": self.state["evaluated"][best]["top1"],
                }
            )
            if path is not None:
                self.save(path)
            log(
                f"generation {gen}: best top1={self.state['evaluated'][best]['top1']:.2f} "
                f"({self.state['evaluated'][best]['gflops']:.4f} GFLOPs) {best}"
            )
        return self.state
