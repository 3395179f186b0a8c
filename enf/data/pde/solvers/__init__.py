"""The PDE generators, one module per equation, each registered by name in :mod:`enf.data.pde` and imported
on first use (an optional solver dependency, torch-harmonics or Dedalus, is only needed by its generator):
:mod:`~enf.data.pde.solvers.plane`, :mod:`~enf.data.pde.solvers.navier_stokes`,
:mod:`~enf.data.pde.solvers.sphere`, :mod:`~enf.data.pde.solvers.shallow_water`,
:mod:`~enf.data.pde.solvers.ball`."""
